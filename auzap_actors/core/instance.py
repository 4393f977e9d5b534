"""The whole per-instance decision as one pure step.

``step(snapshot, input, now, policy, jitter_sample) -> (snapshot, effects)``: no I/O, no clock
reads, no randomness of its own.  The instance actor feeds it inputs (webhook events, user
commands, health-timer ticks, and the answers of the effects it carried out) and carries out
the effects in order; an effect that asks Evolution something is answered by feeding the
answer back as the next input.

Rules (read these before changing ``step``)
------------------------------------------

* The state machine (``core.state``) hears webhooks and commands; the health policy
  (``core.health``) hears checks.  The glue between them lives in the step and only there
  (``core.instance_machine``, which ``_Step`` is built on, calls ``health_event_for`` /
  ``state_event_for`` of ``core.health_sync``): when a check changes the status, state and
  health change in the same step, so no snapshot ever shows ``open`` beside a failed check.
* ``Persist``, when present, is the first effect: the actor writes the new snapshot (with the
  inbox row that carried the input, in one transaction) before it publishes anything, so a
  browser never hears of a state that is not stored.  A new ``last_check_at`` alone is not
  worth a write.
* Everything pure that follows from one input (a give-up moving to ``needs_attention``, a
  logout seen by a check, the start of an automatic reconnect) is folded into the same step;
  the calls to Evolution come last, in order.
* The vocabulary (inputs, effects) is in ``core.instance_model``, the sentences users read in
  ``core.notices``.
* Notifications are frames of this step, never of the actor: "Reconnected" replaces
  "connected" after an automatic reconnect, so the user hears one of them.
* A logout is never followed by an automatic reconnect: the health policy stops expecting the
  instance open (``expect_open``), and ``Tick`` does nothing until it is seen open again.
  Only ``expect_open`` decides whether a tick checks.
* Auto-reply (``core.auto_reply``): ``TextsArrived`` (the new messages of a batch, with the
  facts the actor read in that batch's transaction) gives the decisions to record with it;
  ``ReplyComposed`` gives the send, or how the reply ends.  Neither changes the snapshot.
* Stale logouts: Evolution logs out asynchronously (a delete logs out first; the close/401
  follows, maybe retried) and its envelopes do not tell one instance of a name from the next.
  While the state is ``sessionless`` (no session can exist), Evolution's news of a logout
  changes nothing: a deleted instance's late logout never reaches the row that replaced it.
* Evolution's side: a connect for an instance Evolution does not have yet first creates it
  (``EnsureCreated``, then the connect is fed again); a 404 from Evolution (``Forgotten``,
  ``Observed(missing=True)``) makes the next connect or reconnect create it again.
"""

from __future__ import annotations

from dataclasses import replace

from .auto_reply import composed, decide
from .health import (
    CheckNotOpen,
    CheckOpen,
    EvolutionUnreachable,
    HealthEvent,
    HealthPolicy,
    ReconnectAnswered,
    check_outcome,
)
from .instance_machine import InstanceMachine
from .instance_model import (
    FULL_CHECK_EVERY,
    Boot,
    CallReconnect,
    CheckPurpose,
    ConnectAnswered,
    Created,
    Effect,
    EnsureCreated,
    Feed,
    Forgotten,
    Input,
    Observed,
    OrganizationChanged,
    Persist,
    Publish,
    ReconnectOutcome,
    ReplyComposed,
    ResumeAnswered,
    ResumeSession,
    RunCheck,
    SettingsChanged,
    SyncWebhook,
    TextsArrived,
    Tick,
)
from .notices import SCAN_AGAIN
from .state import (
    ConnectionOpened,
    ConnectRequested,
    Event,
    QrUpdated,
    ReportedClosed,
    ReportedConnecting,
    ReportedOpen,
    Status,
    ends_session,
)
from .views import InstanceSnapshot

# The one place to import the step's vocabulary from: re-exported here.
__all__ = [
    "FULL_CHECK_EVERY",
    "Boot",
    "CallReconnect",
    "CheckPurpose",
    "ConnectAnswered",
    "Created",
    "Effect",
    "EnsureCreated",
    "Feed",
    "Forgotten",
    "Input",
    "Observed",
    "OrganizationChanged",
    "Persist",
    "Publish",
    "ReconnectOutcome",
    "ReplyComposed",
    "ResumeAnswered",
    "ResumeSession",
    "RunCheck",
    "SettingsChanged",
    "SyncWebhook",
    "TextsArrived",
    "Tick",
    "send_refusal",
    "step",
    "wants_health_tick",
]


# ---- the step -------------------------------------------------------------------------------


def step(
    snapshot: InstanceSnapshot,
    item: Input,
    now: float,
    policy: HealthPolicy,
    jitter_sample: float,
) -> tuple[InstanceSnapshot, tuple[Effect, ...]]:
    """One input: the next snapshot and the effects to carry out, in order.

    ``now`` is epoch seconds; ``jitter_sample`` in [0, 1) is used for any delay this input
    sets (ValueError outside).  Raises ``InvalidTransition`` only for a (status, event) pair
    missing from the table, which the tests prove cannot happen.
    """
    run = _Step(snapshot, now, policy, jitter_sample)
    run.take(item)
    return run.result()


def wants_health_tick(snapshot: InstanceSnapshot) -> bool:
    """Whether a ``Tick`` can lead to a check: the step's own test, also used by the node's
    health scheduler to skip the actors it would only wake for nothing."""
    return snapshot.health.expect_open and not snapshot.deleted


def send_refusal(snapshot: InstanceSnapshot) -> str | None:
    """Why a text cannot be sent now (None: it can)."""
    state = snapshot.state
    if state.is_connected:
        return None
    return f"WhatsApp is {state.status.value}, not connected."


class _Step(InstanceMachine):
    """What each input does to the snapshot, on top of the state machine and the health
    policy kept in step (`InstanceMachine`: the snapshot within this step, the effects
    gathered so far)."""

    def take(self, item: Input) -> None:
        snap = self.snap
        match item:
            case ConnectRequested() if not snap.in_evolution:
                self.calls += [EnsureCreated(), Feed(item)]
            case Boot():
                if not snap.in_evolution:
                    return
                self.calls.append(SyncWebhook())
                if snap.health.expect_open:
                    self._check_next("boot")
                else:
                    self.calls.append(RunCheck("reconcile", full=False))
            case Tick():
                # Also when Evolution forgot the instance: each check says "missing", and the
                # reconnect the failures lead to creates it again.
                if wants_health_tick(snap):
                    self._check_next("periodic")
            case Created(adopted=adopted):
                self.snap = replace(snap, in_evolution=True)
                if adopted and snap.state.sessionless:  # it may have a session: logouts count
                    self.snap = replace(self.snap, state=replace(snap.state, sessionless=False))
                    self.persist = True
            case Forgotten():
                self.snap = replace(snap, in_evolution=False)
            case OrganizationChanged(organization_id=org):
                if org != snap.organization_id:
                    self.snap = replace(snap, organization_id=org, updated_at=self.now)
                    self.persist = True
            case SettingsChanged(auto_reply=auto_reply, prompt=prompt, limits=limits):
                new = replace(
                    snap,
                    auto_reply=snap.auto_reply if auto_reply is None else auto_reply,
                    auto_reply_prompt=snap.auto_reply_prompt if prompt is None else prompt,
                    auto_reply_limits=snap.auto_reply_limits
                    if limits is None
                    else limits.apply(snap.auto_reply_limits),
                )
                if new != snap:
                    self.snap = replace(new, updated_at=self.now)
                    self.persist = True
            case TextsArrived(texts=texts, facts=facts):
                # The reply decisions are recorded with the batch, before anything is sent.
                self.calls += decide(
                    snap.auto_reply, snap.auto_reply_limits, texts, facts, self.now
                )
            case ReplyComposed():
                self.calls.append(
                    composed(
                        snap.auto_reply,
                        snap.state.is_connected,
                        item.reply_id,
                        item.chat_jid,
                        item.text,
                        item.error,
                        item.answers_then,
                        item.answers_now,
                    )
                )
            case Observed():
                self._observed(item)
            case ConnectAnswered(state=state, qr=qr):
                if state == "open":
                    self._apply(ConnectionOpened())
                elif qr:
                    self._apply(QrUpdated(qr))
                # Otherwise ({"count": 0}) the QR arrives later on the qrcode.updated webhook.
            case ResumeAnswered(opened=opened, pending=pending):
                self._health(CheckOpen() if opened else pending)
            case ReconnectOutcome():
                self._reconnect_outcome(item)
            case _ if snap.state.sessionless and ends_session(item):
                pass  # stale: there is no session to end (the inbox row is applied all the same)
            case _:
                self._apply(item)

    # ---- checks -----------------------------------------------------------------------------

    def _check_next(self, purpose: CheckPurpose) -> None:
        due = self.snap.full_check_in
        self.snap = replace(self.snap, full_check_in=FULL_CHECK_EVERY - 1 if due <= 0 else due - 1)
        health = self.snap.health
        # The node's census (one fetchInstances for all; only an `open` is taken from it) may
        # answer a boot's look and a healthy instance's periodic check, and only while the
        # status is open: a census may be older than a webhook's news of a drop, which it must
        # never undo.  A failing instance or a reconnect's judge is looked at alone.
        shared = (
            self.snap.state.status is Status.OPEN
            and not health.reconnecting
            and (purpose == "boot" or (purpose == "periodic" and health.status == "healthy"))
        )
        self.calls.append(RunCheck(purpose, full=due <= 0, shared=shared))

    def _observed(self, seen: Observed) -> None:
        if seen.purpose == "reconcile":
            self._reconcile(seen)
            return
        if seen.missing:
            self.snap = replace(self.snap, in_evolution=False, last_observed="missing")
            event: HealthEvent = CheckNotOpen("missing")
        elif seen.unreachable is not None or seen.connection_state is None:
            event = EvolutionUnreachable(seen.unreachable or "no answer")
        else:
            self.snap = replace(self.snap, last_observed=seen.connection_state)
            event = check_outcome(seen.connection_state, seen.reason_code)
        if seen.purpose == "boot" and isinstance(event, CheckNotOpen):
            if self.snap.last_observed == "close":
                # Evolution resumes open sessions at its own start; one that closed while we
                # were down is resumed once here, before any failure is counted.
                self.calls.append(ResumeSession(event))
                return
        self._health(event)

    def _reconcile(self, seen: Observed) -> None:
        """Align the status with Evolution's for an instance not expected open."""
        if seen.missing:
            self.snap = replace(self.snap, in_evolution=False)
            self._apply(ReportedClosed())
            return
        reported: dict[str | None, Event] = {
            "open": ReportedOpen(),
            "connecting": ReportedConnecting(),
            "close": ReportedClosed(),
        }
        event = reported.get(seen.connection_state)
        if event is not None:
            self._apply(event)

    def _reconnect_outcome(self, outcome: ReconnectOutcome) -> None:
        if outcome.created:
            self.snap = replace(self.snap, in_evolution=True)
        match outcome.result:
            case "open":
                self._apply(ReportedOpen())
            case "qr" if outcome.qr:
                # The session is gone on Evolution's side: only the user can scan a new QR.
                self._apply(QrUpdated(outcome.qr))
                self._notify(SCAN_AGAIN)
            case "unreachable":
                self._health(EvolutionUnreachable(outcome.detail))
            case _:
                self._health(ReconnectAnswered(opened=False))
