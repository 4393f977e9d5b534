"""Where a stored webhook goes: one pure `classify`, shared by the instance actor (which
applies the row) and the dry-run route (which says what would happen), so the two cannot
disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .payloads import MESSAGE_EVENTS, Batch, parse_batch
from .state import Event
from .webhook import state_event


@dataclass(frozen=True, slots=True)
class StateChange:
    """A connection event for the instance's state machine."""

    event: Event


@dataclass(frozen=True, slots=True)
class Records:
    """Messages, receipts, contacts, chats, groups or presence to store."""

    batch: Batch


@dataclass(frozen=True, slots=True)
class Unhandled:
    """Stored and kept, applied by nothing (yet)."""


Route = StateChange | Records | Unhandled


def classify(event: str, data: Any) -> Route:
    """The route of one webhook event.  Raises WebhookError for a payload that can never be
    applied (the row is then marked `invalid`)."""
    if event in MESSAGE_EVENTS:
        batch = parse_batch(event, data)
        if batch is not None:
            return Records(batch)
    change = state_event(event, data)
    return Unhandled() if change is None else StateChange(change)


def describe(route: Route) -> str:
    """What applying the route does, in words (the dry run's `would`)."""
    match route:
        case StateChange(event=event):
            return f"store and apply {type(event).__name__}"
        case Records(batch=batch):
            return f"store and apply {batch.summary()}"
        case Unhandled():
            return "store as unhandled"
