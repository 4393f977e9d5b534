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

import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from ..core.naming import instance_name_for
from ..core.views import InstanceSnapshot
from ..core.webhook import Envelope, dedup_key
from ..evolution.client import EvolutionClient
from ..store import inbox, instances
from ..store.export import export_lines
from ..store.faults import is_transient
from ..store.inbox import InboxEntry, InboxRejected, InboxUnavailable, InboxWriter
from ..store.views import list_conversations, list_messages
from .hub import Hub, SocketsFull, Subscription
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
from .supervisor import Child, Supervisor

__all__ = [
    "ActorError",
    "ActorUnavailable",
    "Actors",
    "CallTimeout",
    "DatabaseUnavailable",
    "EventRejected",
    "IntakeUnavailable",
    "MailboxFull",
    "NotConnected",
    "SocketsFull",
    "UnknownActor",
    "UserRef",
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


class UnknownActor(ActorError):
    """No actor by that name on this node: 404."""


log = logging.getLogger(__name__)


@asynccontextmanager
async def _database() -> AsyncIterator[None]:
    """A database that is away right now is a 503 (retry), never a 500."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise DatabaseUnavailable("The database is not reachable now; retry shortly.") from exc
        raise


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
    ) -> None:
        self._pool = pool
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
        entry = InboxEntry(key, envelope.instance, envelope.event, envelope.raw)
        try:
            return await self.inbox_writer.submit(entry)
        except InboxRejected as exc:
            raise EventRejected(str(exc)) from None
        except InboxUnavailable as exc:
            raise IntakeUnavailable(str(exc)) from None

    # ---- the user's instance ---------------------------------------------------------------

    async def find_user_instance(self, user: UserRef) -> InstanceSnapshot | None:
        """The user's instance as its actor sees it, or None if the user has none."""
        child = self.supervisor.get(instance_name_for(user.user_id))
        if child is not None and child.snapshot is not None and not child.deleted:
            return await self._follow_organization(user, child.snapshot)
        async with _database():
            record = await instances.find_by_user(self._pool, user.user_id)
        return record.snapshot() if record else None

    async def ensure_user_instance(self, user: UserRef) -> str:
        """The user's row exists and its actor runs; returns the instance name."""
        name = instance_name_for(user.user_id)
        async with _database():
            record, _created = await instances.ensure_instance(
                self._pool, name, user.user_id, user.organization_id
            )
        await self.supervisor.ensure_actor(record.instance_name)
        return record.instance_name

    async def connect(self, user: UserRef) -> InstanceSnapshot:
        name = await self.ensure_user_instance(user)
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

    async def _user_call(self, user: UserRef, message: Any) -> Any:
        """Ask the user's actor; UnknownActor when the user has no instance."""
        async with _database():
            record = await instances.find_by_user(self._pool, user.user_id)
        if record is None:
            raise UnknownActor("You have no WhatsApp instance.")
        return await self.supervisor.call(record.instance_name, message, self.call_timeout_s)

    async def logout(self, user: UserRef) -> InstanceSnapshot:
        snapshot: InstanceSnapshot = await self._user_call(user, Logout())
        return snapshot

    async def change_settings(
        self, user: UserRef, *, auto_reply: bool | None, auto_reply_prompt: str | None
    ) -> InstanceSnapshot:
        """Change the instance's settings (None: left as it is); UnknownActor without one."""
        snapshot: InstanceSnapshot = await self._user_call(
            user, ChangeSettings(auto_reply, auto_reply_prompt)
        )
        return snapshot

    async def delete(self, user: UserRef, *, purge: bool = False) -> None:
        # The actor deletes the instance in Evolution and here, answers, then ends itself.
        await self._user_call(user, DeleteInstance(purge))

    async def send_text(self, user: UserRef, to: str, text: str) -> dict[str, Any]:
        """Send through the user's instance; NotConnected if it is not open."""
        try:
            view: dict[str, Any] = await self._user_call(user, SendText(to, text))
        except UnknownActor:
            raise NotConnected("You have no WhatsApp instance yet; connect first.") from None
        return view

    async def conversations(
        self, user: UserRef, limit: int, before: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the user's conversations, newest first (BadCursor for a foreign cursor)."""
        async with _database():
            return await list_conversations(
                self._pool, instance_name_for(user.user_id), limit, before
            )

    async def messages(
        self, user: UserRef, conversation_id: uuid.UUID, limit: int, before: str | None
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        """A page of one of the user's conversations; None if it is not theirs."""
        async with _database():
            return await list_messages(
                self._pool, instance_name_for(user.user_id), conversation_id, limit, before
            )

    async def export(self, user: UserRef) -> AsyncGenerator[dict[str, Any], None]:
        """The user's backup, line by line (store/export.py): UnknownActor when the user has
        no instance, DatabaseUnavailable when the database is away before the first line.

        The header and the first page are read here, before anything is sent; a database
        lost later ends the stream early, without its `end` line (the reader sees the file
        is incomplete).  The caller must exhaust or `aclose()` what this returns."""
        async with _database():
            record = await instances.find_by_user(self._pool, user.user_id)
        if record is None:
            raise UnknownActor("You have no WhatsApp instance.")
        exported_at = datetime.fromtimestamp(self.now(), UTC)
        lines = export_lines(self._pool, record.instance_name, exported_at)
        ahead: list[dict[str, Any]] = []
        try:
            async with _database():
                # The header, and the first line read from the database (or the end line).
                ahead.append(await anext(lines))
                ahead.append(await anext(lines))
        except BaseException:
            await lines.aclose()
            raise
        return _export_stream(ahead, lines)

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
        failed = await self._failed_rows()
        now = self.now()
        supervisor = self.supervisor
        return {
            "node": {
                "id": self.node_id,
                "started_at": self.started_at,
                "uptime_seconds": round(now - self.started_at, 3),
            },
            "supervisor": {
                "running": supervisor.running,
                "restart_policy": {
                    "max_restarts": supervisor.policy.max_restarts,
                    "window_s": supervisor.policy.window_s,
                },
                "children": {
                    "inbox_writer": repr(self.inbox_writer),
                    "hub": repr(self.hub),
                },
                "evolution_breaker": self._evolution.breaker.snapshot(),
            },
            "actors": [
                {**self._entry(c, now), "failed_rows": _failed_of(failed, c.name)}
                for c in sorted(supervisor.children(), key=_name)
            ],
            "failed_rows_unknown": failed is None,
        }

    async def _failed_rows(self) -> dict[str, dict[str, Any]] | None:
        """Failed inbox rows per instance; None while the database does not answer (the tree
        is what an operator reads during an outage)."""
        try:
            with trio.fail_after(2):
                return await inbox.failed_rows(self._pool)
        except Exception as exc:
            if is_transient(exc):
                return None
            raise

    def _entry(self, child: Child, now: float) -> dict[str, Any]:
        # One node owns every actor until leases exist (DESIGN §7): no epoch yet.
        return {**child.entry(now), "owner_node": self.node_id, "lease_epoch": None}

    def actor_entry(self, name: str) -> dict[str, Any]:
        child = self.supervisor.get(name)
        if child is None:
            raise UnknownActor(f"No actor for {name}.")
        return self._entry(child, self.now())

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
        reasons = []
        try:
            with trio.fail_after(2):
                await self._pool.fetchval("SELECT 1")
        except Exception as exc:
            reasons.append(f"database unreachable: {type(exc).__name__}")
        if not self.supervisor.running:
            reasons.append("supervisor not running")
        if not self.inbox_writer.running:
            reasons.append("webhook inbox writer not running")
        # An open circuit to Evolution, parked actors and actors waiting for the database are
        # reported, not reasons to take this node out of service: webhooks are still stored
        # and every other instance still works.
        statuses = [c.status for c in self.supervisor.children()]
        return {
            "reasons": reasons,
            "evolution": self._evolution.breaker.snapshot(),
            "actors": {
                "parked": statuses.count("crashed"),
                "waiting_for_database": statuses.count("waiting_for_database"),
            },
        }


async def _export_stream(
    ahead: list[dict[str, Any]], lines: AsyncGenerator[dict[str, Any], None]
) -> AsyncGenerator[dict[str, Any], None]:
    try:
        for line in ahead:
            yield line
        try:
            async for line in lines:
                yield line
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("export ended early, the database is away: %r", exc)
    finally:
        await lines.aclose()


def _failed_of(failed: dict[str, dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    if failed is None:
        return None
    return failed.get(name, {"count": 0, "latest": []})


def _name(child: Child) -> str:
    return child.name
