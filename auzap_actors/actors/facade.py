"""The one door of the web front into the service: intake of webhooks, reads, the user's
commands, browser subscriptions and the operators' views.  The front imports this (and pure
`core` types), never the store nor the Evolution client.

The seed's instance operations are here, race-free: findUserInstance, ensureUserInstance and
connectUserWhatsApp.  The seed's createUserInstance (the Evolution side) is the actor's first
step of every connect, so it runs exactly once per instance however many connects race:
the database (unique user_id and instance_name, ON CONFLICT) makes a second row impossible,
and the instance's actor serialises everything done with Evolution.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..core.auto_reply import LimitsPatch
from ..core.naming import instance_name_for
from ..core.views import InstanceSnapshot
from ..core.webhook import Envelope, dedup_key
from ..evolution.client import EvolutionClient
from ..observability.logs import (
    current_correlation,
    new_request_id,
    sane_request_id,
    set_correlation,
)
from ..observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..observability.metrics import Metrics
from ..store import instances
from ..store.export import encode_line as encode_export_line
from ..store.inbox import InboxEntry, InboxRejected, InboxUnavailable, InboxWriter
from ..store.views import list_conversations, list_messages
from .export_stream import open_export
from .hub import DIRECT_SOCKET, DirectWriter, Hub, SocketsFull, Subscription, wire_bytes
from .mailbox import ActorError, ActorUnavailable, CallTimeout, DatabaseUnavailable, MailboxFull
from .messages import (
    ChangeSettings,
    Connect,
    DeleteInstance,
    Logout,
    NotConnected,
    SendText,
    SetOrganization,
)
from .operators import Operators
from .selection import InstanceLimitReached, Selection, UnknownActor, UnknownInstance
from .selection import database as _database
from .supervisor import Child, Supervisor

__all__ = [
    "DIRECT_SOCKET",
    "METRICS_CONTENT_TYPE",
    "ActorError",
    "ActorUnavailable",
    "Actors",
    "AutoReplyUnavailable",
    "CallTimeout",
    "DatabaseUnavailable",
    "DirectWriter",
    "EventRejected",
    "InstanceLimitReached",
    "IntakeUnavailable",
    "MailboxFull",
    "NotConnected",
    "SocketsFull",
    "Subscription",
    "UnknownActor",
    "UnknownInstance",
    "UserRef",
    "encode_export_line",
    "new_request_id",
    "sane_request_id",
    "set_correlation",
    "wire_bytes",
]


@dataclass(frozen=True, slots=True)
class UserRef:
    user_id: uuid.UUID
    organization_id: uuid.UUID | None
    expires_at: float | None = None  # epoch seconds of the token that named this user


class EventRejected(ActorError):
    """The database refuses this event itself (never storable): 400, Evolution stops."""


class IntakeUnavailable(ActorError):
    """The event cannot be stored now: 503 + Retry-After, Evolution retries."""


class AutoReplyUnavailable(ActorError):
    """Auto-reply cannot be turned on: no AI responder is configured (409)."""


class Actors:
    def __init__(
        self,
        *,
        pool: Any,
        supervisor: Supervisor,
        hub: Hub,
        inbox_writer: InboxWriter,
        evolution: EvolutionClient,
        now: Callable[[], float],
        node_id: str,
        call_timeout_s: float = 30.0,
        metrics: Metrics | None = None,
        max_instances_per_user: int = 1,
    ) -> None:
        self._pool = pool
        self.max_instances_per_user = max_instances_per_user
        self.selection = Selection(pool, supervisor, max_instances_per_user)
        # The service's metrics: the web counts the webhooks it refuses here.
        self.metrics = Metrics(process=False) if metrics is None else metrics
        self.operators = Operators(
            pool=pool,
            supervisor=supervisor,
            hub=hub,
            evolution=evolution,
            metrics=self.metrics,
            now=now,
            node_id=node_id,
        )
        self.supervisor = supervisor
        self.hub = hub
        self.inbox_writer = inbox_writer
        self._evolution = evolution
        self.now = now
        self.node_id = node_id
        self.started_at = now()
        self.call_timeout_s = call_timeout_s

    # ---- intake ----------------------------------------------------------------------------

    async def accept_webhook(self, envelope: Envelope) -> bool:
        """Store one event durably; True when it was already stored (a duplicate delivery).

        Raises EventRejected or IntakeUnavailable."""
        # No dedup key (no date_time): every delivery is its own row, under a key of its own.
        key = dedup_key(envelope) or f"once-{uuid.uuid4().hex}"
        # The row keeps this request's correlation id: the actor applies it under the same id.
        entry = InboxEntry(
            key, envelope.instance, envelope.event, envelope.raw, current_correlation()
        )
        try:
            duplicate = await self.inbox_writer.submit(entry)
        except InboxRejected as exc:
            self.metrics.webhook_rejected("unstorable", envelope.event)
            raise EventRejected(str(exc)) from None
        except InboxUnavailable as exc:
            self.metrics.webhook_rejected("unavailable", envelope.event)
            raise IntakeUnavailable(str(exc)) from None
        self.metrics.webhook_accepted(envelope.event, duplicate=duplicate)
        return duplicate

    def webhook_rejected(self, reason: str, event: str | None = None) -> None:
        """The front refused a webhook before it reached the inbox (401, 400, 403, 413)."""
        self.metrics.webhook_rejected(reason, event)

    # ---- the user's instance ---------------------------------------------------------------

    async def find_user_instance(
        self, user: UserRef, instance: str | None = None
    ) -> InstanceSnapshot | None:
        """The user's instance (`instance`: the one of theirs so named or labelled; None:
        their primary) as its actor sees it, or None if there is no such instance."""
        if instance is None:
            child = self.supervisor.get(instance_name_for(user.user_id))
            if child is not None and child.snapshot is not None and not child.deleted:
                return await self._follow_organization(user, child.snapshot)
        record = await self.selection.record(user.user_id, instance)
        if record is None:
            return None
        if instance is not None:
            child = self.supervisor.get(record.instance_name)
            if child is not None and child.snapshot is not None and not child.deleted:
                return await self._follow_organization(user, child.snapshot)
        return record.snapshot()

    async def user_instances(self, user: UserRef) -> list[tuple[InstanceSnapshot, str | None]]:
        """All the user's instances, the primary first, each with its label."""
        return await self.selection.listing(user.user_id)

    async def ensure_user_instance(self, user: UserRef) -> str:
        """The user's row exists and its actor runs; returns the instance name."""
        name = instance_name_for(user.user_id)
        async with _database():
            record, _created = await instances.ensure_instance(
                self._pool, name, user.user_id, user.organization_id
            )
        await self.supervisor.ensure_actor(record.instance_name)
        return record.instance_name

    async def connect(
        self, user: UserRef, instance: str | None = None, *, label: str | None = None
    ) -> InstanceSnapshot:
        """Connect the user's primary instance (created if missing), or the one `instance`
        selects, or the one labelled `label`; a label (or a selector that is a label) the user
        has not used yet creates another instance, up to AUZAP_MAX_INSTANCES_PER_USER
        (InstanceLimitReached beyond it)."""
        if instance is None and label is None and self.max_instances_per_user == 1:
            name = await self.ensure_user_instance(user)  # the seed's path, unchanged
        else:
            name = await self.selection.ensure(user.user_id, user.organization_id, instance, label)
        snapshot: InstanceSnapshot = await self.supervisor.call(
            name, Connect(), self.call_timeout_s
        )
        return await self._follow_organization(user, snapshot)

    async def _follow_organization(
        self, user: UserRef, snapshot: InstanceSnapshot
    ) -> InstanceSnapshot:
        """The organization is the one of the user's current token, not the one they had when
        the instance was created: `org.*` frames follow the user to a new organization."""
        org = str(user.organization_id) if user.organization_id else None
        if snapshot.organization_id == org:
            return snapshot
        changed: InstanceSnapshot = await self.supervisor.call(
            snapshot.instance_name, SetOrganization(org), self.call_timeout_s
        )
        return changed

    async def _user_call(self, user: UserRef, message: Any, instance: str | None = None) -> Any:
        """Ask the actor of the user's primary (or selected) instance; UnknownActor when the
        user has no instance, UnknownInstance when the selector names none of theirs."""
        name = await self.selection.required(user.user_id, instance)
        return await self.supervisor.call(name, message, self.call_timeout_s)

    async def logout(self, user: UserRef, instance: str | None = None) -> InstanceSnapshot:
        snapshot: InstanceSnapshot = await self._user_call(user, Logout(), instance)
        return snapshot

    @property
    def auto_reply_available(self) -> bool:
        """Whether a responder is configured (demo: the offline one; else AUZAP_AI_BASE_URL)."""
        return self.supervisor.deps.auto_reply.responder is not None

    def auto_reply_counts(self) -> dict[str, int]:
        """Auto-replies of this service by outcome (decided, debounced, sent, failed, skipped,
        uncertain, resumed, recomposed): what `auzap_auto_replies_total{outcome}` exports."""
        return dict(self.supervisor.deps.auto_reply.stats.counts)

    async def change_settings(
        self,
        user: UserRef,
        *,
        auto_reply: bool | None,
        auto_reply_prompt: str | None,
        limits: LimitsPatch | None = None,
        instance: str | None = None,
    ) -> InstanceSnapshot:
        """Change the instance's settings (None: left as it is); UnknownActor without one,
        AutoReplyUnavailable when turning auto-reply on without a responder."""
        if auto_reply and not self.auto_reply_available:
            raise AutoReplyUnavailable(
                "Auto-reply needs an AI provider, and none is configured on this service"
                " (AUZAP_AI_BASE_URL)."
            )
        snapshot: InstanceSnapshot = await self._user_call(
            user, ChangeSettings(auto_reply, auto_reply_prompt, limits), instance
        )
        return snapshot

    async def delete(
        self, user: UserRef, *, purge: bool = False, instance: str | None = None
    ) -> None:
        # The actor deletes the instance in Evolution and here, answers, then ends itself.
        await self._user_call(user, DeleteInstance(purge), instance)

    async def send_text(
        self, user: UserRef, to: str, text: str, instance: str | None = None
    ) -> dict[str, Any]:
        """Send through the user's instance; NotConnected if it is not open."""
        try:
            view: dict[str, Any] = await self._user_call(user, SendText(to, text), instance)
        except UnknownInstance:
            raise
        except UnknownActor:
            raise NotConnected("You have no WhatsApp instance yet; connect first.") from None
        return view

    async def conversations(
        self, user: UserRef, limit: int, before: str | None, instance: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the user's conversations, newest first (BadCursor for a foreign cursor)."""
        name = await self.selection.for_reads(user.user_id, instance)
        async with _database():
            return await list_conversations(self._pool, name, limit, before)

    async def messages(
        self,
        user: UserRef,
        conversation_id: uuid.UUID,
        limit: int,
        before: str | None,
        instance: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        """A page of one of the user's conversations; None if it is not theirs."""
        name = await self.selection.for_reads(user.user_id, instance)
        async with _database():
            return await list_messages(self._pool, name, conversation_id, limit, before)

    async def export(
        self, user: UserRef, instance: str | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The user's backup, line by line, as `export_stream.py` reads it: UnknownActor when
        the user has no instance, DatabaseUnavailable when the database is away before the
        first line.  The caller must exhaust or `aclose()` what this returns."""
        name = await self.selection.required(user.user_id, instance)
        return await open_export(self._pool, name, datetime.fromtimestamp(self.now(), UTC))

    @contextmanager
    def subscribe(self, user: UserRef) -> Iterator[Subscription]:
        """Live frames for the user and their organization (CONTRACT §4).

        Raises SocketsFull when the node serves all the sockets it may; may evict the user's
        oldest socket (its subscription's `evicted` turns true)."""
        org = str(user.organization_id) if user.organization_id else None
        with self.hub.subscribe(str(user.user_id), org) as subscription:
            yield subscription

    # ---- operators -------------------------------------------------------------------------

    async def tree(self) -> dict[str, Any]:
        """`/admin/tree` (CONTRACT §6), with each actor's inbox rows settled as failed."""
        return await self.operators.tree(self.started_at, self.inbox_writer)

    def _entry(self, child: Child, now: float) -> dict[str, Any]:
        return self.operators.actor_entry(child)

    def actor_entry(self, name: str) -> dict[str, Any]:
        child = self.supervisor.get(name)
        if child is None:
            raise UnknownActor(f"No actor for {name}.")
        return self._entry(child, self.now())

    async def instances_page(
        self,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
        health: str | None,
        organization_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        """`GET /admin/instances` (BadCursor for a cursor we did not issue)."""
        async with _database():
            return await self.operators.instances_page(
                limit=limit,
                cursor=cursor,
                status=status,
                health=health,
                organization_id=organization_id,
            )

    async def instance_detail(self, name: str) -> dict[str, Any]:
        """`GET /admin/instances/<name>`; UnknownActor when nobody knows that name."""
        async with _database():
            found = await self.operators.instance_detail(name)
        if found is None:
            raise UnknownActor(f"No instance named {name}.")
        return found

    async def metrics_text(self) -> bytes:
        """`GET /metrics`: the Prometheus text format (METRICS_CONTENT_TYPE)."""
        return await self.operators.metrics_text()

    async def _known_instance(self, name: str) -> None:
        """UnknownActor (404) for a name that has neither an actor nor a row: starting one
        would only leave a dead actor's record in the tree."""
        if self.supervisor.get(name) is None:
            async with _database():
                if await instances.find_by_name(self._pool, name) is None:
                    raise UnknownActor(f"No instance named {name}.")

    async def restart_actor(self, name: str) -> dict[str, Any]:
        await self._known_instance(name)
        await self.supervisor.restart_actor(name)
        return self.actor_entry(name)

    async def stop_actor(self, name: str) -> dict[str, Any]:
        await self.supervisor.stop_actor(name)
        return self.actor_entry(name)

    async def start_actor(self, name: str) -> dict[str, Any]:
        await self._known_instance(name)
        await self.supervisor.ensure_actor(name, revive=True)
        return self.actor_entry(name)

    async def readiness(self) -> dict[str, Any]:
        """`/readyz`: `reasons` is empty when this node can take traffic."""
        return await self.operators.readiness(self.inbox_writer)
