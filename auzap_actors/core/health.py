"""Health checks and the automatic reconnect policy of one instance: pure, no I/O, no clock
reads, no randomness.  The caller passes ``now`` (any monotonic clock, in seconds) and a
``jitter_sample`` in [0, 1); the actor runs the checks, executes the decisions and keeps the
state.

Rules (read these before changing ``on_event``)
------------------------------------------------

Status is one of ``healthy``, ``unhealthy``, ``disconnected``, ``error``.  ``expect_open`` says
whether the instance is supposed to be connected; it starts true (an actor starts watching an
instance that should be connected), ``Stopped`` and a logout make it false, and only an
observation of the instance open (``CheckOpen``, ``ReconnectAnswered(opened=True)``) makes it
true again.  A ``UserActed`` does not: a click on "connect" starts a QR flow, and a session
waiting for its QR is not a failing one.

CheckOpen -- the instance is open.
    ``healthy``; failures 0; issues cleared; ``alerted``, ``gave_up`` false (an open instance
    needs no attention); ``expect_open`` true.  ``healthy_since`` is set to ``now`` when it was
    unset, so uptime restarts after every observed outage.  If a reconnect was in progress:
    ``Reconnected(attempt)``.  After ``stable_after_s`` of continuous health (measured on each
    CheckOpen from ``healthy_since``) the reconnect attempt counter and ``reconnect_due_at``
    reset.

CheckNotOpen -- Evolution answers, but the instance is not open.
    While ``expect_open`` is false this is expected (logged out, stopped, waiting for a QR):
    status ``disconnected``, nothing counted, no decision.  A ``close`` with a logged-out reason
    code (401/402/403/406) is handled as ``CheckLoggedOut`` whatever the caller called it, so
    a misclassified logout can never start a reconnect loop.  Otherwise: ``unhealthy``;
    failures + 1; ``healthy_since`` cleared; the issue "WhatsApp connection is <state>
    (reason N)" added.  Then, in order:

    1. failures reach ``alert_threshold`` and the streak has not alerted yet: ``Alert``.
    2. ``gave_up``: nothing more.
    3. a reconnect was in progress: it failed.  ``ReconnectFailed(attempt, delay)`` with
       ``reconnect_due_at = now + reconnect_delay(attempt + 1)``; or, when the attempt was the
       ``max_reconnects``-th, ``ReconnectFailed(attempt, None)`` followed by ``GiveUp``.
    4. failures >= ``max_failures`` and ``now >= reconnect_due_at`` (or none is set):
       ``Reconnect(reconnect_attempts + 1)`` when ``auto_reconnect``, counting the attempt and
       holding the next one back by ``reconnect_delay(attempt + 1)`` in case this one is never
       reported; ``GiveUp`` instead when ``max_reconnects`` attempts are already spent or
       ``auto_reconnect`` is off (no automatic recovery is coming: a human must act).

    With the defaults: failure 1 nothing, 2 ``Alert(2)``, 3 ``Reconnect(1)``.

CheckLoggedOut -- close with 401/402/403/406: the credentials are gone.
    ``disconnected``; every counter reset; ``gave_up`` false; ``expect_open`` false; the issues
    are the logout sentence alone.  ``SessionEnded(code)`` only when the instance was expected
    open, so a repeated check (or the close that follows a logout the user asked for) does not
    notify twice.  Never a reconnect: nothing counts until the instance is seen open again.

EvolutionUnreachable -- breaker open or a transport error: not the instance's fault.
    ``error``; the issue "Evolution API unreachable" added (users read issues: the detail,
    which may name hosts, is for the operators' log); failures, ``alerted``,
    ``healthy_since`` and the attempt counter unchanged; never a decision.  ``reconnect_due_at``
    is pushed to at least ``now``: no backlog of reconnects fires when Evolution returns, the
    next check that gets an answer decides.  A reconnect in progress stays in progress and is
    judged by that check.

ReconnectStarted -- the actor began the automatic reconnect it was told to make.
    ``reconnecting`` true (ignored while ``gave_up`` or not ``expect_open``: a stale report).

ReconnectAnswered -- Evolution's answer to the reconnect call.
    ``opened=True`` is handled as CheckOpen (``last_check_at`` aside: it was not a check);
    ``opened=False`` changes nothing, the next check decides.

UserActed -- the user clicked connect, or an operator restarted the instance.
    ``gave_up``, ``alerted``, ``reconnecting`` false; failures, attempts 0; no
    ``reconnect_due_at``.  Status, issues and ``expect_open`` unchanged.

Stopped -- the instance is no longer expected to be connected.
    Back to the initial state with ``expect_open`` false and no issues; no decision.

Issues are human sentences, newest last, at most ``MAX_ISSUES``; adding a sentence already
listed moves it to the end instead of repeating it.  Any answer from Evolution removes the
"Evolution API unreachable" sentences.

Invariants (the property tests check them): ``0 <= reconnect_attempts <= max_reconnects``;
``reconnecting`` and ``gave_up`` are never both true; a ``Reconnect`` is never decided before
``reconnect_due_at``, nor while ``gave_up`` or not ``expect_open``; every delay is at most
``reconnect_cap_s * (1 + jitter)``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import assert_never

from .backoff import check_jitter_sample
from .health_model import (
    MAX_ISSUES,
    Alert,
    CheckLoggedOut,
    CheckNotOpen,
    CheckOpen,
    Decision,
    EvolutionUnreachable,
    GiveUp,
    HealthEvent,
    HealthPolicy,
    HealthState,
    HealthStatus,
    Reconnect,
    ReconnectAnswered,
    Reconnected,
    ReconnectFailed,
    ReconnectStarted,
    SessionEnded,
    Stopped,
    UserActed,
    check_outcome,
    next_check_delay,
    reconnect_delay,
    uptime,
)
from .state import LOGGED_OUT_REASONS

# The one place to import the health policy from: the vocabulary is re-exported here.
__all__ = [
    "MAX_ISSUES",
    "Alert",
    "CheckLoggedOut",
    "CheckNotOpen",
    "CheckOpen",
    "Decision",
    "EvolutionUnreachable",
    "GiveUp",
    "HealthEvent",
    "HealthPolicy",
    "HealthState",
    "HealthStatus",
    "Reconnect",
    "ReconnectAnswered",
    "ReconnectFailed",
    "ReconnectStarted",
    "Reconnected",
    "SessionEnded",
    "Stopped",
    "UserActed",
    "check_outcome",
    "next_check_delay",
    "on_event",
    "reconnect_delay",
    "uptime",
]

UNREACHABLE_ISSUE = "Evolution API unreachable"


# ---- the transition -------------------------------------------------------------------------


def _add_issue(issues: tuple[str, ...], issue: str) -> tuple[str, ...]:
    kept = tuple(i for i in issues if i != issue)
    return (*kept, issue)[-MAX_ISSUES:]


def _answered(issues: tuple[str, ...]) -> tuple[str, ...]:
    """Evolution answered: its unreachability is no longer an issue."""
    return tuple(i for i in issues if i != UNREACHABLE_ISSUE)


def _not_open_issue(event: CheckNotOpen) -> str:
    reason = "" if event.reason_code is None else f" (reason {event.reason_code})"
    return f"WhatsApp connection is {event.state}{reason}"


def _give_up_reason(attempts: int, policy: HealthPolicy) -> str:
    if not policy.auto_reconnect:
        return (
            f"WhatsApp has been disconnected for {policy.max_failures} checks in a row and"
            " automatic reconnect is off. Click Connect to reconnect."
        )
    return (
        f"WhatsApp did not come back after {attempts} automatic reconnect attempts."
        " Click Connect to reconnect."
    )


def _on_open(
    state: HealthState, now: float, policy: HealthPolicy
) -> tuple[HealthState, tuple[Decision, ...]]:
    healthy_since = state.healthy_since if state.healthy_since is not None else now
    decisions: tuple[Decision, ...] = ()
    if state.reconnecting:
        decisions = (Reconnected(state.reconnect_attempts),)
    new = replace(
        state,
        status="healthy",
        consecutive_failures=0,
        healthy_since=healthy_since,
        issues=(),
        alerted=False,
        reconnecting=False,
        gave_up=False,
        expect_open=True,
    )
    if now - healthy_since >= policy.stable_after_s:
        new = replace(new, reconnect_attempts=0, reconnect_due_at=None)
    return new, decisions


def _on_logged_out(
    state: HealthState, reason_code: int, now: float
) -> tuple[HealthState, tuple[Decision, ...]]:
    new = HealthState(
        status="disconnected",
        last_check_at=now,
        issues=(
            f"WhatsApp was logged out (reason {reason_code}): connect again and scan a new QR code",
        ),
        expect_open=False,
    )
    return new, ((SessionEnded(reason_code),) if state.expect_open else ())


def _on_not_open(
    state: HealthState,
    event: CheckNotOpen,
    now: float,
    policy: HealthPolicy,
    jitter_sample: float,
) -> tuple[HealthState, tuple[Decision, ...]]:
    if not state.expect_open:
        return replace(state, status="disconnected", last_check_at=now), ()
    failures = state.consecutive_failures + 1
    new = replace(
        state,
        status="unhealthy",
        consecutive_failures=failures,
        last_check_at=now,
        healthy_since=None,
        issues=_add_issue(_answered(state.issues), _not_open_issue(event)),
    )
    decisions: list[Decision] = []
    if failures >= policy.alert_threshold and not state.alerted:
        decisions.append(Alert(failures))
        new = replace(new, alerted=True)
    if state.gave_up:
        return new, tuple(decisions)

    if state.reconnecting:
        attempt = state.reconnect_attempts
        new = replace(new, reconnecting=False)
        if attempt >= policy.max_reconnects:
            reason = _give_up_reason(attempt, policy)
            decisions += [ReconnectFailed(attempt, None), GiveUp(reason)]
            return _gave_up(new, reason), tuple(decisions)
        delay = reconnect_delay(attempt + 1, policy, jitter_sample)
        decisions.append(ReconnectFailed(attempt, delay))
        return replace(new, reconnect_due_at=now + delay), tuple(decisions)

    due = state.reconnect_due_at
    if failures >= policy.max_failures and (due is None or now >= due):
        attempts = state.reconnect_attempts
        if not policy.auto_reconnect or attempts >= policy.max_reconnects:
            reason = _give_up_reason(attempts, policy)
            decisions.append(GiveUp(reason))
            return _gave_up(new, reason), tuple(decisions)
        attempt = attempts + 1
        decisions.append(Reconnect(attempt))
        new = replace(
            new,
            reconnect_attempts=attempt,
            # Held back in case the attempt is never reported; a ReconnectFailed resets it.
            reconnect_due_at=now + reconnect_delay(attempt + 1, policy, jitter_sample),
        )
    return new, tuple(decisions)


def _gave_up(state: HealthState, reason: str) -> HealthState:
    return replace(state, gave_up=True, reconnecting=False, issues=_add_issue(state.issues, reason))


def on_event(
    state: HealthState,
    event: HealthEvent,
    now: float,
    policy: HealthPolicy,
    jitter_sample: float,
) -> tuple[HealthState, tuple[Decision, ...]]:
    """Apply one event: the new state and the decisions the actor must execute, in order.

    ``jitter_sample`` (in [0, 1), drawn by the caller) is used for any delay this event sets.
    Raises ValueError for a sample outside [0, 1).
    """
    check_jitter_sample(jitter_sample)
    match event:
        case CheckOpen():
            new, decisions = _on_open(state, now, policy)
            return replace(new, last_check_at=now), decisions
        case CheckNotOpen(state="close", reason_code=code) if code in LOGGED_OUT_REASONS:
            assert code is not None
            return _on_logged_out(state, code, now)
        case CheckNotOpen():
            return _on_not_open(state, event, now, policy, jitter_sample)
        case CheckLoggedOut(reason_code=code):
            return _on_logged_out(state, code, now)
        case EvolutionUnreachable():
            due = state.reconnect_due_at
            return replace(
                state,
                status="error",
                last_check_at=now,
                issues=_add_issue(state.issues, UNREACHABLE_ISSUE),
                reconnect_due_at=None if due is None else max(due, now),
            ), ()
        case ReconnectStarted():
            if state.gave_up or not state.expect_open:
                return state, ()
            return replace(state, reconnecting=True), ()
        case ReconnectAnswered(opened=opened):
            if opened:
                return _on_open(state, now, policy)
            return state, ()
        case UserActed():
            return replace(
                state,
                consecutive_failures=0,
                alerted=False,
                reconnect_attempts=0,
                reconnect_due_at=None,
                reconnecting=False,
                gave_up=False,
            ), ()
        case Stopped():
            return HealthState(status="disconnected", expect_open=False), ()
        case _:
            assert_never(event)
