"""What is submitted to the inbox writer, how it is encoded, and how it can fail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class InboxUnavailable(Exception):
    """The event could not be stored now; the webhook answers 503 and Evolution retries."""


class InboxRejected(Exception):
    """The database refuses this event itself (never storable): answered 400, not retried."""


@dataclass(frozen=True, slots=True)
class InboxEntry:
    dedup_key: str
    instance_name: str
    event: str
    payload: dict[str, Any]
    # The correlation id of the request that carried the event: the actor logs under it when
    # it applies the row.
    request_id: str | None = None


def _storable(value: Any) -> Any:
    """PostgreSQL text cannot hold U+0000 nor lone surrogates (JSON allows both): replace them
    with U+FFFD so that such an event is stored rather than refused."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    return value


def payload_text(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(_storable(payload), ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        return json.dumps(_storable(payload), ensure_ascii=False, separators=(",", ":"))
    return text
