"""The operators' views beyond the tree: `GET /admin/instances` (every instance the database
knows, paged, with its actor's live state where one runs), `GET /admin/instances/<name>` (one
instance in depth) and the scrape of `GET /metrics`.  Reached through `facade.Actors`.

The list answers from the database, so it covers instances whose actor is not running (stopped,
never booted, on no node); where an actor runs, its snapshot (fresher than the row, which the
actor writes on every change) gives the status and health.  Filters apply to the stored row.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from typing import Any

import trio

from ..core.errors import BadCursor
from ..core.views import InstanceSnapshot, health_view, iso
from ..evolution.client import EvolutionClient
from ..observability.metrics import Metrics, ScrapeSample
from ..store import inbox, instances
from ..store import operators as queries
from ..store.faults import is_transient
from ..store.inbox import InboxWriter
from ..store.instances import InstanceRecord
from .hub import Hub
from .supervisor import Child, Supervisor

# A scrape or an operator's page never waits long for the database.
DB_WAIT_S = 2.0


def encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The instance name a page ended at; BadCursor if the cursor is not one we issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadCursor("The `cursor` is not one this API issued.") from None
    if not name or len(name) > 256:
        raise BadCursor("The `cursor` is not one this API issued.")
    return name


class Operators:
    def __init__(
        self,
        *,
        pool: Any,
        supervisor: Supervisor,
        hub: Hub,
        evolution: EvolutionClient,
        metrics: Metrics,
        now: Callable[[], float],
        node_id: str,
    ) -> None:
        self._pool = pool
        self.supervisor = supervisor
        self.hub = hub
        self.evolution = evolution
        self.metrics = metrics
        self.now = now
        self.node_id = node_id

    def actor_entry(self, child: Child) -> dict[str, Any]:
        # One node owns every actor until leases exist (DESIGN §7): no epoch yet.
        return {**child.entry(self.now()), "owner_node": self.node_id, "lease_epoch": None}

    async def tree(self, started_at: float, inbox_writer: InboxWriter) -> dict[str, Any]:
        """`/admin/tree` (CONTRACT §6), with each actor's inbox rows settled as failed."""
        failed = await self._failed_rows()
        now = self.now()
        supervisor = self.supervisor
        return {
            "node": {
                "id": self.node_id,
                "started_at": started_at,
                "uptime_seconds": round(now - started_at, 3),
                # Until leases exist (DESIGN §7) this node holds every actor it runs, no epochs.
                "leases": {
                    "held": sum(1 for c in supervisor.children() if not c.deleted),
                    "epochs": False,
                },
            },
            "supervisor": {
                "running": supervisor.running,
                "restart_policy": {
                    "max_restarts": supervisor.policy.max_restarts,
                    "window_s": supervisor.policy.window_s,
                },
                "children": {"inbox_writer": repr(inbox_writer), "hub": repr(self.hub)},
                # The same, as fields for the dashboard (the reprs stay for older readers).
                "child_stats": {"inbox_writer": inbox_writer.stats(), "hub": self.hub.stats()},
                "evolution_breaker": self.evolution.breaker.snapshot(),
            },
            # Counts by outcome, latest failures, the responder and its breaker.
            "auto_reply": supervisor.deps.auto_reply.snapshot(),
            "actors": [
                {**self.actor_entry(c), "failed_rows": _failed_of(failed, c.name)}
                for c in sorted(supervisor.children(), key=_name)
            ],
            "failed_rows_unknown": failed is None,
            # While the database does not answer (failed is None) it is not asked again.
            "inbox": {
                **(await self._inbox_backlog() if failed is not None else _UNKNOWN_BACKLOG),
                "pending_cap": queries.PENDING_COUNT_CAP,
                "events_per_minute": self.metrics.webhooks_by_minute(),
            },
        }

    async def _inbox_backlog(self) -> dict[str, Any]:
        """The whole inbox's lag (the /metrics probe) and pending rows (capped); None for
        both while the database does not answer."""
        try:
            with trio.fail_after(DB_WAIT_S):
                lag = await queries.inbox_lag_s(self._pool)
                pending = await queries.inbox_pending(self._pool)
        except Exception as exc:
            if is_transient(exc):
                return _UNKNOWN_BACKLOG
            raise
        return {"lag_seconds": round(lag, 3), **pending}

    async def _failed_rows(self) -> dict[str, dict[str, Any]] | None:
        """Failed inbox rows per instance; None while the database does not answer (the tree
        is what an operator reads during an outage)."""
        try:
            with trio.fail_after(DB_WAIT_S):
                return await inbox.failed_rows(self._pool)
        except Exception as exc:
            if is_transient(exc):
                return None
            raise

    async def readiness(self, inbox_writer: InboxWriter) -> dict[str, Any]:
        """`/readyz`: `reasons` is empty when this node can take traffic."""
        reasons = []
        try:
            with trio.fail_after(DB_WAIT_S):
                await self._pool.fetchval("SELECT 1")
        except Exception as exc:
            reasons.append(f"database unreachable: {type(exc).__name__}")
        if not self.supervisor.running:
            reasons.append("supervisor not running")
        if not inbox_writer.running:
            reasons.append("webhook inbox writer not running")
        # An open circuit to Evolution, parked actors and actors waiting for the database are
        # reported, not reasons to take this node out of service: webhooks are still stored
        # and every other instance still works.
        statuses = [c.status for c in self.supervisor.children()]
        return {
            "reasons": reasons,
            "evolution": self.evolution.breaker.snapshot(),
            "actors": {
                "parked": statuses.count("crashed"),
                "waiting_for_database": statuses.count("waiting_for_database"),
            },
        }

    def _live(self, name: str) -> Child | None:
        child = self.supervisor.get(name)
        return None if child is None or child.deleted else child

    def _instance(self, record: InstanceRecord) -> dict[str, Any]:
        """A row as the list shows it, the live snapshot over it where an actor runs."""
        child = self._live(record.instance_name)
        snap: InstanceSnapshot = (
            child.snapshot if child is not None and child.snapshot else record.snapshot()
        )
        return {
            "instance_name": record.instance_name,
            "user_id": record.user_id,
            "organization_id": snap.organization_id,
            "status": snap.state.status.value,
            "is_connected": snap.state.is_connected,
            "phone_number": snap.state.phone_number,
            "health": health_view(snap, self.now()),
            "auto_reply": snap.auto_reply,
            "in_evolution": record.evolution_instance_id is not None,
            "updated_at": iso(snap.updated_at),
            "actor": self.actor_entry(child) if child is not None else None,
        }

    async def instances_page(
        self,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
        health: str | None,
        organization_id: uuid.UUID | None,
    ) -> dict[str, Any]:
        """`{"instances": [...], "next": cursor|null}`, ordered by name (BadCursor)."""
        after = decode_cursor(cursor) if cursor else None
        with trio.fail_after(DB_WAIT_S * 2):
            records = await queries.page_instances(
                self._pool,
                after=after,
                limit=limit + 1,
                status=status,
                health=health,
                organization_id=organization_id,
            )
        more = len(records) > limit
        records = records[:limit]
        return {
            "instances": [self._instance(r) for r in records],
            "next": encode_cursor(records[-1].instance_name) if more else None,
        }

    async def instance_detail(self, name: str) -> dict[str, Any] | None:
        """One instance in depth; None when neither the database nor this node knows it."""
        with trio.fail_after(DB_WAIT_S * 2):
            record = await instances.find_by_name(self._pool, name)
            backlog = await queries.inbox_backlog(self._pool, name)
            failed = await queries.failed_rows_of(self._pool, name)
        child = self._live(name)
        if record is None and child is None:
            return None
        journal = self.metrics.journal
        return {
            "instance": self._instance(record) if record is not None else None,
            "actor": self.actor_entry(child) if child is not None else None,
            "health_history": journal.health_history(name),
            "inbox": {**backlog, "failed": failed},
            "evolution_calls": journal.evolution_calls(name),
        }

    # ---- /metrics --------------------------------------------------------------------------

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition: counters as they stand, states read now."""
        sample = self._sample()
        try:
            with trio.fail_after(DB_WAIT_S):
                sample.inbox_lag_s = await queries.inbox_lag_s(self._pool)
        except Exception as exc:
            if not is_transient(exc):
                raise
            sample.inbox_lag_s = None  # NaN: the scrape still answers during an outage
        return self.metrics.render(sample)

    def _sample(self) -> ScrapeSample:
        sample = ScrapeSample()
        for child in self.supervisor.children():
            sample.actors[child.status] = sample.actors.get(child.status, 0) + 1
            if child.snapshot is not None and not child.deleted:
                status = child.snapshot.state.status.value
                sample.instances[status] = sample.instances.get(status, 0) + 1
            size = child.mailbox.size
            sample.mailbox_messages += size
            sample.mailbox_max = max(sample.mailbox_max, size)
            sample.mailbox_peak = max(sample.mailbox_peak, child.mailbox.peak)
        breaker = self.evolution.breaker.state
        sample.breaker_state = breaker.status
        sample.breaker_opened = breaker.opened_count
        hub = self.hub
        sample.websockets = hub.open_sockets
        sample.frames_published = hub.published
        sample.websockets_evicted = hub.evicted
        sample.websockets_refused = hub.refused
        return sample


_UNKNOWN_BACKLOG: dict[str, Any] = {"lag_seconds": None, "pending": None, "pending_capped": False}


def _failed_of(failed: dict[str, dict[str, Any]] | None, name: str) -> dict[str, Any] | None:
    if failed is None:
        return None
    return failed.get(name, {"count": 0, "latest": []})


def _name(child: Child) -> str:
    return child.name
