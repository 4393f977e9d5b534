"""The state machine and the health policy of one instance, kept in step, within one
``core.instance.step``.

``InstanceMachine`` holds the snapshot as it evolves within the step and the effects gathered
so far.  An event goes through the state machine (``core.state``) and tells the health policy
(``core.health``) what it means; a check that changes the status goes the other way, so state
and health change together (the glue is ``core.health_sync``).  The policy's decisions and the
machine's notices become frames and Evolution calls.  What each input does is
``core.instance``'s ``_Step``, built on this; the rules it keeps are written there.
"""

from __future__ import annotations

from dataclasses import replace

from .health import (
    Alert,
    Decision,
    GiveUp,
    HealthEvent,
    HealthPolicy,
    HealthState,
    Reconnect,
    Reconnected,
    ReconnectFailed,
    ReconnectStarted,
    SessionEnded,
    on_event,
)
from .health_sync import health_event_for, state_event_for
from .instance_model import CallReconnect, Effect, Persist, Publish
from .notices import (
    RECONNECTED,
    alert_notice,
    notification_frame,
    reconnect_failed_notice,
    reconnecting_notice,
)
from .state import (
    AttentionRequired,
    ConnectionClosed,
    Event,
    Notify,
    ReconnectRequested,
    transition,
)
from .views import InstanceSnapshot, qrcode_frame, status_frame


class InstanceMachine:
    """The snapshot as it evolves within one step, and the effects gathered so far."""

    def __init__(
        self, snapshot: InstanceSnapshot, now: float, policy: HealthPolicy, jitter: float
    ) -> None:
        self.snap = snapshot
        self.now = now
        self.policy = policy
        self.jitter = jitter
        self.persist = False
        self.frames: list[Effect] = []
        self.calls: list[Effect] = []

    def result(self) -> tuple[InstanceSnapshot, tuple[Effect, ...]]:
        head: tuple[Effect, ...] = (Persist(),) if self.persist else ()
        return self.snap, (*head, *self.frames, *self.calls)

    # ---- the state machine and the health policy, kept in step -----------------------------

    def _apply(
        self,
        event: Event,
        health_update: tuple[HealthState, tuple[Decision, ...]] | None = None,
    ) -> None:
        """Run one event through the state machine and what it tells the health policy.

        ``health_update`` is the policy's verdict when a check caused the event: it replaces
        what the transition would tell the policy, so state and health change together."""
        old = self.snap
        state, effects = transition(old.state, event, self.now)
        health: HealthState = old.health
        decisions: tuple[Decision, ...] = ()
        if health_update is not None:
            health, decisions = health_update
        elif (told := health_event_for(old.state, state, event)) is not None:
            health, decisions = on_event(old.health, told, self.now, self.policy, self.jitter)
        if state != old.state or health != old.health:
            self.snap = replace(old, state=state, health=health, updated_at=self.now)
            self.persist = True
        self._status_frames(old, self.snap)
        reconnected = any(isinstance(d, Reconnected) for d in decisions)
        for effect in effects:
            if isinstance(effect, Notify):
                if not (reconnected and effect.kind == "connected"):
                    self._notify(effect)
            else:
                self.calls.append(effect)
        for decision in decisions:
            self._decide(decision)

    def _health(self, event: HealthEvent) -> None:
        """Feed the health policy one event; a status it changes goes through the machine."""
        old = self.snap
        health, decisions = on_event(old.health, event, self.now, self.policy, self.jitter)
        state_event = state_event_for(event, old.state.status, health)
        if state_event is not None:
            self._apply(state_event, health_update=(health, decisions))
            return
        if health != old.health:
            self.snap = replace(old, health=health, updated_at=self.now)
            if replace(old.health, last_check_at=None) != replace(health, last_check_at=None):
                self.persist = True
        for decision in decisions:
            self._decide(decision)

    def _decide(self, decision: Decision) -> None:
        match decision:
            case Alert(failures=failures):
                self._notify(alert_notice(failures))
            case Reconnect(attempt=attempt):
                self._notify(reconnecting_notice(attempt))
                self._health(ReconnectStarted())
                self._apply(ReconnectRequested())
                self.calls.append(
                    CallReconnect(
                        attempt,
                        restart=self.snap.last_observed == "connecting",
                        create_first=not self.snap.in_evolution,
                    )
                )
            case Reconnected():
                self._notify(RECONNECTED)
            case ReconnectFailed(next_in_s=next_in) if next_in is not None:
                self._notify(reconnect_failed_notice(next_in))
            case ReconnectFailed():
                pass  # the last attempt: the GiveUp that follows says it
            case GiveUp(reason=reason):
                self._apply(AttentionRequired(reason))
            case SessionEnded(reason_code=code):
                self._apply(ConnectionClosed(code))

    # ---- frames -----------------------------------------------------------------------------

    def _status_frames(self, old: InstanceSnapshot, new: InstanceSnapshot) -> None:
        if (old.state.status, old.state.phone_number) != (new.state.status, new.state.phone_number):
            frame = status_frame(new)
            self.frames += [Publish("user", "status", frame), Publish("org", "org.status", frame)]
        if new.state.qr_code is not None and new.state.qr_code != old.state.qr_code:
            self.frames.append(Publish("user", "qrcode", qrcode_frame(new)))

    def _notify(self, note: Notify) -> None:
        self.frames.append(Publish("user", "notification", notification_frame(note)))
