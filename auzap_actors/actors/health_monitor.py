"""The health half of an instance actor: periodic checks, the reconnect policy's decisions,
and automatic reconnects.

The policy itself is pure (`core.health`); this mixin observes Evolution, feeds the policy and
executes what it decides.  Evolution being unreachable is recorded as such and never blamed
on the instance.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import trio

from ..core.health import (
    Alert,
    CheckNotOpen,
    CheckOpen,
    Decision,
    EvolutionUnreachable,
    GiveUp,
    HealthEvent,
    HealthState,
    ReconnectAnswered,
    Reconnected,
    ReconnectFailed,
    ReconnectStarted,
    check_outcome,
    next_check_delay,
    on_event,
)
from ..core.health import LoggedOut as HealthLoggedOut
from ..core.health import Reconnect as ReconnectDecision
from ..core.health_sync import state_event_for
from ..core.state import (
    AttentionRequired,
    ConnectionClosed,
    Notify,
    QrUpdated,
    ReconnectRequested,
    ReportedOpen,
)
from ..evolution.errors import EvolutionError, EvolutionNotFound, EvolutionUnavailable
from ..store import instances
from .mailbox import MailboxFull
from .messages import HealthTick

if TYPE_CHECKING:
    from .instance_actor import InstanceActor

log = logging.getLogger(__name__)

# Every Nth check reads fetchInstances (connectionStatus + disconnectionReasonCode) instead of
# connectionState, which can report a stale state (evolution-api-v2.md §2.4).
RECONCILE_EVERY = 5


def _health_changed(old: HealthState, new: HealthState) -> bool:
    """Persist on change; a new last_check_at alone is not worth a write."""
    return replace(old, last_check_at=None) != replace(new, last_check_at=None)


class HealthMonitor:
    def __init__(self, actor: InstanceActor) -> None:
        self.actor = actor
        # The first look (at boot) reads fetchInstances: it knows a logout (401) from a drop.
        self.checks = RECONCILE_EVERY - 1
        self.last_observed: str | None = None

    @property
    def policy(self) -> Any:
        return self.actor.deps.health_policy

    async def timer(self) -> None:
        """Cast a HealthTick into our own mailbox every interval (jittered, spread)."""
        await trio.sleep(self.policy.interval_s * random.random())
        while True:
            if self.actor.snapshot.health.expect_open:
                try:
                    self.actor.handle.mailbox.cast(HealthTick())
                except MailboxFull:
                    pass  # busy: the next tick comes soon enough
            await trio.sleep(next_check_delay(self.policy, random.random()))

    async def observe(self) -> HealthEvent:
        """One look at Evolution: the policy event it amounts to."""
        evolution = self.actor.deps.evolution
        name = self.actor.name
        self.checks += 1
        try:
            if self.checks % RECONCILE_EVERY == 0:
                found = await evolution.fetch_instances(name=name)
                if not found:
                    raise EvolutionNotFound(
                        [f"{name} not found"],
                        status=404,
                        method="GET",
                        path="/instance/fetchInstances",
                    )
                info = found[0]
                self.last_observed = info.connection_status
                return check_outcome(info.connection_status, info.disconnection_reason_code)
            state = await evolution.connection_state(name)
            self.last_observed = state
            return check_outcome(state)
        except EvolutionNotFound:
            # Evolution lost the instance (its storage was reset): recreate on reconnect.
            self.actor.created_in_evolution = False
            self.last_observed = "missing"
            return CheckNotOpen("missing")
        except EvolutionUnavailable as exc:
            return EvolutionUnreachable(str(exc))
        except EvolutionError as exc:
            return EvolutionUnreachable(f"Evolution answered an error: {exc}")

    async def boot(self) -> None:
        """First look after the actor starts: reconcile, and resume a dropped session.

        Evolution 2.3.7 resumes open sessions at its own start; one that is closed now is
        resumed here once (not counted as an automatic reconnect), staggered node-wide by the
        connect limiter, before any failure is counted.
        """
        actor = self.actor
        if not actor.created_in_evolution:
            return
        await actor.sync_webhook()
        if not actor.snapshot.health.expect_open:
            await actor.reconcile()
            return
        event = await self.observe()
        if isinstance(event, CheckNotOpen) and self.last_observed == "close":
            try:
                async with actor.deps.connect_limiter:
                    result = await actor.deps.evolution.connect(actor.name)
            except EvolutionError as exc:
                log.info("resuming %s at start failed: %s", actor.name, exc)
            else:
                if result.state == "open":
                    event = CheckOpen()
        await self.handle(event)

    async def check(self) -> None:
        if not self.actor.snapshot.health.expect_open or not self.actor.created_in_evolution:
            return
        await self.handle(await self.observe())

    async def handle(self, event: HealthEvent) -> None:
        """Feed one event to the policy, keep the state machine in step, execute decisions."""
        actor = self.actor
        old = actor.snapshot
        now = actor.deps.now()
        health, decisions = on_event(old.health, event, now, self.policy, random.random())
        state_event = state_event_for(event, old.state.status, health)
        if state_event is not None:
            # State and health change together, in one snapshot and one write.
            await actor.apply(state_event, health_update=(health, decisions))
            return
        new = replace(
            old, health=health, updated_at=now if health != old.health else old.updated_at
        )
        actor.handle.snapshot = new
        if _health_changed(old.health, health):
            await instances.save_snapshot(actor.deps.pool, new)
        for decision in decisions:
            await self.decide(decision)

    async def decide(self, decision: Decision) -> None:
        actor = self.actor
        match decision:
            case Alert(failures=failures):
                actor.notify(
                    Notify(
                        "warning",
                        "WhatsApp connection problem",
                        f"WhatsApp failed {failures} health checks in a row; it will be reconnected"
                        " automatically if it does not come back.",
                        action="reconnect",
                    )
                )
            case ReconnectDecision(attempt=attempt):
                await self.reconnect(attempt)
            case Reconnected():
                actor.notify(
                    Notify(
                        "info",
                        "WhatsApp reconnected",
                        "WhatsApp is connected again.",
                        action="reconnect",
                    )
                )
            case ReconnectFailed(next_in_s=next_in) if next_in is not None:
                actor.notify(
                    Notify(
                        "warning",
                        "Reconnect failed",
                        f"WhatsApp did not come back; the next try is in {next_in:.0f} s.",
                        action="reconnect",
                    )
                )
            case GiveUp(reason=reason):
                await actor.apply(AttentionRequired(reason))
            case HealthLoggedOut(reason_code=code):
                await actor.apply(ConnectionClosed(code))

    async def reconnect(self, attempt: int) -> None:
        """An automatic reconnect: connect (restart when stuck connecting), bounded node-wide."""
        actor = self.actor
        actor.notify(
            Notify(
                "info",
                "Reconnecting WhatsApp",
                f"Reconnecting automatically (attempt {attempt}).",
                action="reconnect",
            )
        )
        await self.handle(ReconnectStarted())
        await actor.apply(ReconnectRequested())
        evolution = actor.deps.evolution
        try:
            await actor.ensure_created()
            async with actor.deps.connect_limiter:
                if self.last_observed == "connecting":
                    result = await evolution.restart(actor.name)
                else:
                    result = await evolution.connect(actor.name)
        except EvolutionUnavailable as exc:
            await self.handle(EvolutionUnreachable(str(exc)))
            return
        except EvolutionError as exc:
            log.info("reconnect of %s refused: %s", actor.name, exc)
            await self.handle(ReconnectAnswered(opened=False))
            return
        if result.state == "open":
            await actor.apply(ReportedOpen())
        elif result.qr is not None and result.qr.base64:
            # The session is gone on Evolution's side: only the user can scan a new QR.
            await actor.apply(QrUpdated(result.qr.base64))
            actor.notify(
                Notify(
                    "warning",
                    "Scan the QR code again",
                    "WhatsApp lost its session; scan the new QR code to reconnect.",
                    kind="qr_expired",
                )
            )
        else:
            await self.handle(ReconnectAnswered(opened=False))
