"""The pure health and reconnect policy (core.health): drop, alert and reconnect sequences with
the default policy, backoff and giving up, logouts, Evolution outages, and properties over
arbitrary event sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auzap_actors.core.health import (
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
    on_event,
    reconnect_delay,
    uptime,
)
from auzap_actors.core.health_sync import state_event_for
from auzap_actors.core.state import ReportedConnecting, ReportedOpen, Status

DEFAULT = HealthPolicy()
DROP = CheckNotOpen("connecting", None)


@dataclass
class Run:
    """Feeds events to on_event, keeping the state and every decision."""

    policy: HealthPolicy = DEFAULT
    state: HealthState = field(default_factory=HealthState)
    sample: float = 0.5
    log: list[tuple[float, HealthEvent, tuple[Decision, ...]]] = field(default_factory=list)

    def __call__(self, event: HealthEvent, now: float) -> tuple[Decision, ...]:
        self.state, decisions = on_event(self.state, event, now, self.policy, self.sample)
        self.log.append((now, event, decisions))
        return decisions

    # Read through properties: mypy would keep narrowing `run.state.status` across calls.
    @property
    def status(self) -> str:
        return self.state.status

    @property
    def issues(self) -> tuple[str, ...]:
        return self.state.issues

    def all_decisions(self) -> list[Decision]:
        return [d for _, _, ds in self.log for d in ds]


def healthy_run(policy: HealthPolicy = DEFAULT, at: float = 0.0) -> Run:
    run = Run(policy)
    assert run(CheckOpen(), at) == ()
    return run


# ---- a drop: alert at 2, reconnect at 3, reconnected ------------------------------------------


def test_drop_alerts_after_two_checks_and_reconnects_at_three() -> None:
    run = healthy_run()
    assert run.status == "healthy"
    assert uptime(run.state, 100.0) == 100.0

    assert run(DROP, 60.0) == ()
    assert run.status == "unhealthy"
    assert run.state.consecutive_failures == 1
    assert uptime(run.state, 60.0) is None
    assert run(DROP, 120.0) == (Alert(2),)
    assert run(DROP, 180.0) == (Reconnect(1),)
    assert run.state.reconnect_attempts == 1
    assert run(ReconnectStarted(), 180.5) == ()
    assert run.state.reconnecting

    assert run(CheckOpen(), 240.0) == (Reconnected(1),)
    assert run.status == "healthy"
    assert run.state.consecutive_failures == 0
    assert run.issues == ()
    assert not run.state.reconnecting and not run.state.alerted
    assert run.state.healthy_since == 240.0  # uptime restarts from that check
    assert uptime(run.state, 250.0) == 10.0
    assert run.state.last_check_at == 240.0
    assert run.all_decisions() == [Alert(2), Reconnect(1), Reconnected(1)]


def test_reconnect_answered_open_counts_as_reconnected() -> None:
    run = healthy_run()
    for t in (60.0, 120.0, 180.0):
        run(DROP, t)
    run(ReconnectStarted(), 181.0)
    assert run(ReconnectAnswered(opened=False), 182.0) == ()
    assert run.state.reconnecting
    assert run(ReconnectAnswered(opened=True), 183.0) == (Reconnected(1),)
    assert run.status == "healthy" and run.state.healthy_since == 183.0
    assert run.state.last_check_at == 180.0  # an answer is not a check


def test_issues_describe_the_failure_without_repeating_it() -> None:
    run = healthy_run()
    run(CheckNotOpen("connecting", None), 60.0)
    run(CheckNotOpen("connecting", None), 120.0)
    run(CheckNotOpen("close", 428), 180.0)
    assert run.issues == (
        "WhatsApp connection is connecting",
        "WhatsApp connection is close (reason 428)",
    )
    run(UserActed(), 200.0)
    for i in range(15):
        run(CheckNotOpen("unknown", 500 + i), 200.0 + i)
    issues = run.issues
    assert len(issues) == MAX_ISSUES
    assert issues[-1] == "WhatsApp connection is unknown (reason 514)"


# ---- backoff and giving up --------------------------------------------------------------------


def fail_until_give_up(policy: HealthPolicy, sample: float) -> Run:
    """Failed checks every 60 s, and a check at each due time; every reconnect is started."""
    run = Run(policy, sample=sample)
    run(CheckOpen(), 0.0)
    now = 0.0
    for _ in range(200):
        now += 60.0
        if run.state.reconnect_due_at is not None:
            now = max(now, run.state.reconnect_due_at)
        decisions = run(DROP, now)
        if any(isinstance(d, Reconnect) for d in decisions):
            run(ReconnectStarted(), now)
        if run.state.gave_up:
            return run
    raise AssertionError("never gave up")


@pytest.mark.parametrize("sample", [0.0, 0.5, 0.999999])
def test_failing_reconnects_back_off_to_the_cap_then_give_up(sample: float) -> None:
    policy = HealthPolicy(max_reconnects=10)
    run = fail_until_give_up(policy, sample)
    decisions = run.all_decisions()
    reconnects = [d.attempt for d in decisions if isinstance(d, Reconnect)]
    assert reconnects == list(range(1, 11))
    failed = [d for d in decisions if isinstance(d, ReconnectFailed)]
    assert [d.attempt for d in failed] == list(range(1, 11))
    delays = [d.next_in_s for d in failed[:-1]]
    factor = 1 + policy.jitter * sample
    expected = [min(300.0, 5.0 * 2**n) * factor for n in range(1, 10)]  # 10, 20, ... 300
    assert delays == pytest.approx(expected)
    assert all(d is not None and d <= policy.reconnect_cap_s * (1 + policy.jitter) for d in delays)
    assert failed[-1].next_in_s is None
    assert decisions.count(Alert(2)) == 1
    give_ups = [d for d in decisions if isinstance(d, GiveUp)]
    assert len(give_ups) == 1 and "10 automatic reconnect attempts" in give_ups[0].reason
    assert run.state.gave_up and not run.state.reconnecting
    assert run.state.reconnect_attempts == 10


def test_each_reconnect_waits_for_its_due_time() -> None:
    policy = HealthPolicy(reconnect_base_s=100.0, reconnect_cap_s=1000.0)
    run = Run(policy, sample=0.0)
    run(CheckOpen(), 0.0)
    for t in (10.0, 20.0, 30.0):
        run(DROP, t)
    run(ReconnectStarted(), 30.0)
    assert run(DROP, 40.0) == (ReconnectFailed(1, 200.0),)
    assert run.state.reconnect_due_at == 240.0
    assert run(DROP, 239.0) == ()  # still backing off: the failure counts, no reconnect
    assert run.state.consecutive_failures == 5
    assert run(DROP, 240.0) == (Reconnect(2),)


def test_silence_after_give_up_until_the_user_acts() -> None:
    run = fail_until_give_up(DEFAULT, 0.3)
    assert run.all_decisions()[-2:] == [
        ReconnectFailed(5, None),
        GiveUp(
            "WhatsApp did not come back after 5 automatic reconnect attempts."
            " Click Connect to reconnect."
        ),
    ]
    now = run.log[-1][0]
    for i in range(1, 30):
        assert run(DROP, now + 60.0 * i) == ()
        assert run(ReconnectStarted(), now + 60.0 * i) == ()  # stale: ignored
        assert not run.state.reconnecting
    assert run.state.gave_up

    now += 3600.0
    run(UserActed(), now)
    assert not run.state.gave_up
    assert run.state.reconnect_attempts == 0 and run.state.consecutive_failures == 0
    assert run(DROP, now + 60) == ()
    assert run(DROP, now + 120) == (Alert(2),)
    assert run(DROP, now + 180) == (Reconnect(1),)


def test_seen_open_clears_give_up() -> None:
    run = fail_until_give_up(DEFAULT, 0.3)
    now = run.log[-1][0] + 60.0
    assert run(CheckOpen(), now) == ()
    assert not run.state.gave_up and run.status == "healthy"
    # The attempts are not forgiven before a stable period: a quick drop gives up again.
    assert run.state.reconnect_attempts == 5
    run(DROP, now + 60)
    assert run(DROP, now + 120) == (Alert(2),)
    assert [type(d) for d in run(DROP, now + 180)] == [GiveUp]


def test_attempt_counter_resets_after_a_stable_period() -> None:
    run = healthy_run()
    for t in (60.0, 120.0, 180.0):
        run(DROP, t)
    run(ReconnectStarted(), 180.0)
    run(CheckOpen(), 240.0)
    assert run.state.reconnect_attempts == 1
    run(CheckOpen(), 240.0 + 599.0)
    assert run.state.reconnect_attempts == 1  # healthy for 599 s: not yet stable
    run(CheckOpen(), 240.0 + 600.0)
    assert run.state.reconnect_attempts == 0
    assert run.state.reconnect_due_at is None
    for t in (900.0, 960.0):
        run(DROP, t)
    assert run(DROP, 1020.0) == (Reconnect(1),)


def test_unreported_reconnects_still_count_and_back_off() -> None:
    policy = HealthPolicy(max_reconnects=2, reconnect_base_s=10.0, jitter=0.0)
    run = Run(policy)
    run(CheckOpen(), 0.0)
    for t in (1.0, 2.0):
        run(DROP, t)
    assert run(DROP, 3.0) == (Reconnect(1),)  # never reported as started
    assert run.state.reconnect_due_at == 23.0
    assert run(DROP, 22.0) == ()
    assert run(DROP, 23.0) == (Reconnect(2),)
    assert run(DROP, 100.0) == (GiveUp(run.issues[-1]),)
    assert run.state.gave_up and run.state.reconnect_attempts == 2


def test_without_auto_reconnect_it_alerts_then_needs_attention() -> None:
    policy = HealthPolicy(auto_reconnect=False)
    run = healthy_run(policy)
    assert run(DROP, 60.0) == ()
    assert run(DROP, 120.0) == (Alert(2),)
    decisions = run(DROP, 180.0)
    assert [type(d) for d in decisions] == [GiveUp]
    assert run.state.gave_up
    assert not any(isinstance(d, Reconnect) for d in run.all_decisions())


# ---- logged out -------------------------------------------------------------------------------


def test_logged_out_notifies_once_and_never_reconnects() -> None:
    run = healthy_run()
    assert run(CheckLoggedOut(401), 60.0) == (SessionEnded(401),)
    assert run.status == "disconnected"
    assert run.state.consecutive_failures == 0
    assert "logged out" in run.issues[0]
    now = 60.0
    for i in range(50):
        now += 60.0
        event = (CheckLoggedOut(401), CheckNotOpen("close", None), DROP, ReconnectStarted())[i % 4]
        assert run(event, now) == ()
        assert run.status == "disconnected"
        assert run.state.consecutive_failures == 0
    run(UserActed(), now + 1)  # the user clicks connect: a QR flow, still not expected open
    for i in range(5):
        assert run(CheckNotOpen("connecting", None), now + 60.0 * (i + 2)) == ()
    assert [d for d in run.all_decisions()] == [SessionEnded(401)]

    # Scanned again: watched again, and a later logout notifies again.
    now += 1000.0
    assert run(CheckOpen(), now) == ()
    assert run.status == "healthy"
    assert run(CheckLoggedOut(403), now + 60) == (SessionEnded(403),)


def test_close_with_a_logged_out_code_is_a_logout_whatever_it_was_called() -> None:
    run = healthy_run()
    run(DROP, 60.0)
    assert run(CheckNotOpen("close", 401), 120.0) == (SessionEnded(401),)
    assert run.status == "disconnected" and run.state.consecutive_failures == 0


def test_logout_during_a_reconnect_ends_it_quietly() -> None:
    run = healthy_run()
    for t in (60.0, 120.0, 180.0):
        run(DROP, t)
    run(ReconnectStarted(), 180.0)
    assert run(CheckLoggedOut(406), 240.0) == (SessionEnded(406),)
    assert not run.state.reconnecting and run.state.reconnect_attempts == 0
    assert run(CheckOpen(), 300.0) == ()  # no Reconnected for a reconnect that was dropped


def test_check_outcome_classifies_answers() -> None:
    assert check_outcome("open") == CheckOpen()
    assert check_outcome("open", 401) == CheckOpen()
    assert check_outcome("close", 403) == CheckLoggedOut(403)
    assert check_outcome("close", 428) == CheckNotOpen("close", 428)
    assert check_outcome("connecting", 401) == CheckNotOpen("connecting", 401)
    assert check_outcome("unknown") == CheckNotOpen("unknown", None)


# ---- Evolution unreachable --------------------------------------------------------------------


@pytest.mark.parametrize("failures_before", [0, 1, 2])
def test_ten_minutes_of_evolution_outage_is_not_the_instances_fault(failures_before: int) -> None:
    run = healthy_run()
    now = 0.0
    for _outage in range(3):  # outages between healthy periods
        for _ in range(failures_before):  # the instance may already be failing
            now += 60.0
            run(DROP, now)
        before = run.state
        for i in range(11):  # 10 minutes, a check every ~60 s
            now += 55.0 + (i % 3) * 5.0
            assert run(EvolutionUnreachable("circuit open"), now) == ()
            assert run.status == "error"
            assert run.state.consecutive_failures == failures_before
            assert run.state.alerted == before.alerted
            assert run.state.reconnect_attempts == 0 and not run.state.gave_up
        assert run.issues.count("Evolution API unreachable") == 1
        now += 60.0
        run(CheckOpen(), now)
        assert run.status == "healthy" and run.issues == ()
    decisions = run.all_decisions()
    assert not any(isinstance(d, Reconnect | GiveUp) for d in decisions)
    # The only alerts are those of real failed checks, one per streak (none from the outages).
    assert decisions == [Alert(2)] * (3 if failures_before == 2 else 0)


def test_outage_does_not_fire_a_backlog_of_reconnects() -> None:
    run = healthy_run()
    for t in (60.0, 120.0, 180.0):
        run(DROP, t)
    run(ReconnectStarted(), 180.0)
    run(DROP, 240.0)  # ReconnectFailed(1, ~10 s)
    assert run.state.reconnect_attempts == 1
    for i in range(10):
        assert run(EvolutionUnreachable("connect timeout"), 300.0 + 60.0 * i) == ()
    assert run.state.reconnect_due_at == 840.0
    assert run.state.reconnect_attempts == 1 and run.state.consecutive_failures == 4
    # Evolution is back: the first answered check decides, once.
    assert run(DROP, 900.0) == (Reconnect(2),)
    assert run.issues == ("WhatsApp connection is connecting",)


def test_reconnect_in_progress_is_judged_by_the_check_after_an_outage() -> None:
    run = healthy_run()
    for t in (60.0, 120.0, 180.0):
        run(DROP, t)
    run(ReconnectStarted(), 180.0)
    for i in range(10):
        run(EvolutionUnreachable("breaker open"), 240.0 + 60.0 * i)
    assert run.state.reconnecting
    assert run(CheckOpen(), 900.0) == (Reconnected(1),)


def test_uptime_survives_an_evolution_outage_but_not_an_instance_outage() -> None:
    run = healthy_run(at=100.0)
    run(EvolutionUnreachable("timeout"), 160.0)
    assert uptime(run.state, 170.0) is None  # unknown while Evolution does not answer
    run(CheckOpen(), 220.0)
    assert run.state.healthy_since == 100.0
    run(DROP, 280.0)
    run(CheckOpen(), 340.0)
    assert run.state.healthy_since == 340.0


# ---- stopped, user acted ----------------------------------------------------------------------


def test_stopped_resets_everything_and_watches_nothing() -> None:
    run = healthy_run()
    for t in (60.0, 120.0, 180.0):
        run(DROP, t)
    run(ReconnectStarted(), 180.0)
    assert run(Stopped(), 200.0) == ()
    assert run.state == HealthState(status="disconnected", expect_open=False)
    for i in range(10):
        assert run(CheckNotOpen("close", None), 260.0 + 60.0 * i) == ()
    assert run(CheckLoggedOut(401), 900.0) == ()  # the user logged out on purpose
    assert run.status == "disconnected"
    assert run(CheckOpen(), 1000.0) == ()
    assert run.state.expect_open and run.status == "healthy"


def test_user_acted_starts_a_new_streak() -> None:
    run = healthy_run()
    run(DROP, 60.0)
    run(DROP, 120.0)
    run(UserActed(), 130.0)
    assert run.state.consecutive_failures == 0 and not run.state.alerted
    assert run(DROP, 180.0) == ()
    assert run(DROP, 240.0) == (Alert(2),)


# ---- delays and policy ------------------------------------------------------------------------


def test_delay_formulas() -> None:
    assert reconnect_delay(1, DEFAULT, 0.0) == 5.0
    assert reconnect_delay(2, DEFAULT, 0.0) == 10.0
    assert reconnect_delay(7, DEFAULT, 0.0) == 300.0  # 320 capped
    assert reconnect_delay(7, DEFAULT, 0.5) == pytest.approx(330.0)
    assert reconnect_delay(10**6, DEFAULT, 0.0) == 300.0
    assert next_check_delay(DEFAULT, 0.5) == 60.0
    assert next_check_delay(DEFAULT, 0.0) == pytest.approx(54.0)
    assert DEFAULT.max_reconnect_delay_s == pytest.approx(360.0)


@pytest.mark.parametrize("sample", [-0.1, 1.0, float("nan")])
def test_samples_outside_the_unit_interval_are_refused(sample: float) -> None:
    with pytest.raises(ValueError, match="jitter_sample"):
        reconnect_delay(1, DEFAULT, sample)
    with pytest.raises(ValueError, match="jitter_sample"):
        next_check_delay(DEFAULT, sample)
    with pytest.raises(ValueError, match="jitter_sample"):
        on_event(HealthState(), CheckOpen(), 0.0, DEFAULT, sample)


def test_attempt_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        reconnect_delay(0, DEFAULT, 0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval_s": 0.0},
        {"alert_threshold": 0},
        {"max_failures": 0},
        {"reconnect_base_s": 0.0},
        {"reconnect_cap_s": 1.0},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"stable_after_s": -1.0},
        {"max_reconnects": 0},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(**kwargs)  # type: ignore[arg-type]


policies = st.builds(
    HealthPolicy,
    interval_s=st.floats(0.01, 3600.0),
    alert_threshold=st.integers(1, 5),
    max_failures=st.integers(1, 6),
    auto_reconnect=st.booleans(),
    reconnect_base_s=st.floats(0.01, 100.0),
    reconnect_cap_s=st.floats(100.0, 1000.0),
    jitter=st.floats(0.0, 1.0),
    stable_after_s=st.integers(0, 300).map(float),
    max_reconnects=st.integers(1, 6),
)
samples = st.floats(0.0, 1.0, exclude_max=True)


@given(policies, st.integers(1, 5000), samples)
def test_reconnect_delay_never_exceeds_its_cap(
    policy: HealthPolicy, attempt: int, sample: float
) -> None:
    delay = reconnect_delay(attempt, policy, sample)
    assert min(policy.reconnect_base_s, policy.reconnect_cap_s) <= delay
    assert delay <= policy.reconnect_cap_s * (1 + policy.jitter)
    assert reconnect_delay(attempt + 1, policy, sample) >= delay


@given(policies, samples)
def test_check_delays_spread_around_the_interval(policy: HealthPolicy, sample: float) -> None:
    delay = next_check_delay(policy, sample)
    assert policy.interval_s * (1 - policy.jitter / 2) <= delay
    assert delay <= policy.interval_s * (1 + policy.jitter / 2)


# ---- properties over arbitrary sequences -------------------------------------------------------

events = st.one_of(
    st.just(CheckOpen()),
    st.builds(
        CheckNotOpen,
        st.sampled_from(["close", "connecting", "unknown"]),
        st.sampled_from([None, 401, 428, 440, 500, 515]),
    ),
    st.builds(CheckLoggedOut, st.sampled_from([401, 402, 403, 406])),
    st.builds(EvolutionUnreachable, st.sampled_from(["circuit open", "connect timeout"])),
    st.just(ReconnectStarted()),
    st.builds(ReconnectAnswered, st.booleans()),
    st.just(UserActed()),
    st.just(Stopped()),
)
# Failed checks weigh more, so that the reconnect and give-up paths are reached often.
steps = st.lists(
    st.tuples(
        st.one_of(events, st.just(DROP), st.just(DROP), st.just(ReconnectStarted())),
        st.integers(0, 400).map(float),
        samples,
    ),
    max_size=120,
)

STATUSES = ("healthy", "unhealthy", "disconnected", "error")


@settings(max_examples=500)
@given(policies, steps)
def test_no_sequence_escapes_the_rules(
    policy: HealthPolicy, seq: list[tuple[HealthEvent, float, float]]
) -> None:
    state = HealthState()
    now = 0.0
    alerts_in_streak = 0
    blocked = False  # logged out or stopped, and not seen open since
    for event, delta, sample in seq:
        now += delta
        before = state
        state, decisions = on_event(before, event, now, policy, sample)

        assert state.status in STATUSES
        assert state.consecutive_failures >= 0
        assert 0 <= state.reconnect_attempts <= policy.max_reconnects
        assert not (state.reconnecting and state.gave_up)
        assert len(state.issues) <= MAX_ISSUES
        assert len(set(state.issues)) == len(state.issues)
        assert state.status != "healthy" or state.healthy_since is not None
        up = uptime(state, now)
        assert up is None or up >= 0
        if state.reconnect_due_at is not None:
            assert state.reconnect_due_at <= now + policy.max_reconnect_delay_s

        if isinstance(event, EvolutionUnreachable):
            assert decisions == ()
            assert state.consecutive_failures == before.consecutive_failures
            assert state.status == "error"
        if isinstance(event, UserActed | Stopped | ReconnectStarted):
            assert decisions == ()
        if not isinstance(event, CheckNotOpen):
            assert not any(isinstance(d, Alert | Reconnect | GiveUp) for d in decisions)

        if isinstance(event, CheckLoggedOut | Stopped) or (
            isinstance(event, CheckNotOpen) and state.status == "disconnected"
        ):
            blocked = True
        if isinstance(event, CheckOpen) or (isinstance(event, ReconnectAnswered) and event.opened):
            blocked = False
            assert state.status == "healthy" and not state.gave_up
        assert blocked == (not state.expect_open)
        if blocked:
            assert state.status in ("disconnected", "error")
            assert state.consecutive_failures == 0
            assert not state.reconnecting

        if state.consecutive_failures == 0:
            alerts_in_streak = 0
        for d in decisions:
            match d:
                case Alert(failures=n):
                    alerts_in_streak += 1
                    assert alerts_in_streak == 1
                    assert n == state.consecutive_failures >= policy.alert_threshold
                case Reconnect(attempt=n):
                    assert policy.auto_reconnect
                    assert not before.gave_up and not blocked and not before.reconnecting
                    due = before.reconnect_due_at
                    assert due is None or now >= due
                    assert state.consecutive_failures >= policy.max_failures
                    assert n == state.reconnect_attempts == before.reconnect_attempts + 1
                case ReconnectFailed(attempt=n, next_in_s=delay):
                    assert before.reconnecting and n == before.reconnect_attempts
                    if delay is None:
                        assert state.gave_up and n == policy.max_reconnects
                    else:
                        assert 0 < delay <= policy.max_reconnect_delay_s
                        assert state.reconnect_due_at == now + delay
                case Reconnected(attempt=n):
                    assert before.reconnecting and n == before.reconnect_attempts
                case GiveUp():
                    assert not before.gave_up and state.gave_up
                case SessionEnded():
                    assert before.expect_open
                    assert state.status == "disconnected" and state.reconnect_attempts == 0
        assert sum(isinstance(d, SessionEnded) for d in decisions) <= 1


@settings(max_examples=200)
@given(policies, st.lists(samples, min_size=1, max_size=40), st.integers(0, 2))
def test_an_outage_never_pushes_an_instance_to_needs_attention(
    policy: HealthPolicy, outage_samples: list[float], failures_before: int
) -> None:
    state = HealthState()
    state, _ = on_event(state, CheckOpen(), 0.0, policy, 0.5)
    now = 0.0
    for _ in range(min(failures_before, policy.max_failures - 1)):
        now += 60.0
        state, _ = on_event(state, DROP, now, policy, 0.5)
    before = state
    for sample in outage_samples:
        now += next_check_delay(policy, sample)
        state, decisions = on_event(state, EvolutionUnreachable("down"), now, policy, sample)
        assert decisions == ()
    assert state.consecutive_failures == before.consecutive_failures
    assert state.alerted == before.alerted
    assert not state.gave_up
    assert state.reconnect_attempts == before.reconnect_attempts


def test_a_check_moves_the_state_machine_only_when_the_status_changes() -> None:
    expecting = HealthState(status="unhealthy", expect_open=True)
    not_expecting = HealthState(status="disconnected", expect_open=False)
    assert state_event_for(CheckOpen(), Status.CONNECTING, HealthState()) == ReportedOpen()
    assert state_event_for(CheckOpen(), Status.NEEDS_ATTENTION, HealthState()) == ReportedOpen()
    assert state_event_for(CheckOpen(), Status.OPEN, HealthState()) is None
    # An open instance that silently dropped is shown as connecting...
    assert state_event_for(CheckNotOpen("close", 428), Status.OPEN, expecting) == (
        ReportedConnecting()
    )
    # ...but not when it is no longer expected open (a logout), nor when it was not open.
    assert state_event_for(CheckNotOpen("close", 401), Status.OPEN, not_expecting) is None
    assert state_event_for(CheckNotOpen("close", 428), Status.CONNECTING, expecting) is None
    assert state_event_for(EvolutionUnreachable("down"), Status.OPEN, expecting) is None
