"""The pure circuit breaker (core.breaker): properties over arbitrary event sequences,
a few worked examples, and the small stateful shell (evolution.breaker) on a fake clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auzap_actors.core.breaker import (
    BreakerConfig,
    BreakerState,
    allow,
    failures_in_window,
    record_abandoned,
    record_failure,
    record_success,
    retry_after,
)
from auzap_actors.evolution.breaker import CircuitBreaker
from auzap_actors.evolution.errors import EvolutionCircuitOpen, EvolutionUnavailable

Op = Literal["allow", "success", "failure", "abandon"]

# Whole seconds make the boundaries (exactly window_s, exactly reset_s) come up often.
configs = st.builds(
    BreakerConfig,
    failures=st.integers(1, 6),
    window_s=st.integers(1, 30).map(float),
    reset_s=st.integers(0, 20).map(float),
)
steps = st.lists(
    st.tuples(
        st.sampled_from(["allow", "success", "failure", "abandon"]),
        st.integers(0, 12).map(float),
    ),
    max_size=80,
)


def apply(state: BreakerState, config: BreakerConfig, op: Op, now: float) -> BreakerState:
    if op == "allow":
        return allow(state, config, now)[0]
    if op == "success":
        return record_success(state, config, now)
    if op == "failure":
        return record_failure(state, config, now)
    return record_abandoned(state, config, now)


def check_shape(state: BreakerState, config: BreakerConfig) -> None:
    assert state.status in ("closed", "open", "half_open")
    if state.status == "closed":
        assert state.opened_at is None and not state.probe_in_flight
        assert len(state.failures) < config.failures
        assert list(state.failures) == sorted(state.failures)
    else:
        assert state.failures == ()
        assert state.opened_at is not None
        assert state.opened_count >= 1
    if state.status == "open":
        assert not state.probe_in_flight


@settings(max_examples=400)
@given(configs, steps)
def test_any_sequence_keeps_the_rules(config: BreakerConfig, seq: list[tuple[Op, float]]) -> None:
    state = BreakerState()
    now = 0.0
    probe_out = False  # a half-open probe was granted and has not reported yet
    closed_failures: list[float] = []  # the spec's own count of failures while closed
    for op, delta in seq:
        now += delta
        before = state
        if op == "allow":
            state, allowed = allow(before, config, now)
            if before.status == "closed":
                assert allowed and state == before
            elif before.status == "open":
                assert before.opened_at is not None
                due = now - before.opened_at >= config.reset_s
                assert allowed == due  # never before reset_s, always after
                assert retry_after(before, config, now) == (
                    0.0 if due else before.opened_at + config.reset_s - now
                )
            if allowed and state.status == "half_open":
                assert not probe_out, "two probes at once"
                probe_out = True
            if before.status == "half_open" and before.probe_in_flight:
                assert not allowed
        else:
            state = apply(before, config, op, now)
            if before.status == "half_open":
                probe_out = False
        if op == "failure" and before.status == "closed":
            recent = [t for t in closed_failures if now - t < config.window_s] + [now]
            should_open = len(recent) >= config.failures
            assert state.status == ("open" if should_open else "closed")
            closed_failures = [] if should_open else recent
        if op == "success" and before.status == "half_open":
            assert state.status == "closed" and state.failures == ()
        if op == "failure" and before.status == "half_open":
            assert state.status == "open" and state.opened_at == now
        if state.status != "closed":
            closed_failures = []
        # opened_count counts exactly the moves into "open".
        entered_open = state.status == "open" and before.status != "open"
        assert state.opened_count == before.opened_count + (1 if entered_open else 0)
        if state.status != "half_open":
            probe_out = False
        assert probe_out == (state.status == "half_open" and state.probe_in_flight)
        check_shape(state, config)
        wait = retry_after(state, config, now)
        assert 0.0 <= wait <= config.reset_s
        if state.status == "closed":
            assert wait == 0.0


@given(
    configs.filter(lambda c: c.failures > 1),
    st.lists(st.integers(0, 5).map(float), max_size=40),
)
def test_failures_outside_the_window_never_count(config: BreakerConfig, gaps: list[float]) -> None:
    # Each failure comes at least window_s after the previous one: only one is ever
    # inside the window, so a breaker that needs two or more never opens.
    state = BreakerState()
    now = 0.0
    for gap in gaps:
        now += config.window_s + gap
        state = record_failure(state, config, now)
        assert failures_in_window(state, config, now) == 1
        assert state.status == "closed"


@given(configs, st.data())
def test_failures_within_the_window_always_open(config: BreakerConfig, data: st.DataObject) -> None:
    # `failures` failures, all at most window_s apart from the first: open at the last.
    offsets = sorted(
        data.draw(
            st.lists(
                st.floats(0, config.window_s, exclude_max=True),
                min_size=config.failures,
                max_size=config.failures,
            )
        )
    )
    state = BreakerState()
    for i, t in enumerate(offsets):
        state = record_success(state, config, t)  # successes do not reset the count
        state = record_failure(state, config, t)
        expected = "open" if i == config.failures - 1 else "closed"
        assert state.status == expected
    assert state.opened_at == offsets[-1] and state.opened_count == 1


def test_worked_cycle() -> None:
    config = BreakerConfig(failures=3, window_s=10.0, reset_s=5.0)
    state = BreakerState()
    for t in (0.0, 1.0):
        state = record_failure(state, config, t)
    assert (state.status, state.failures) == ("closed", (0.0, 1.0))
    state = record_failure(state, config, 10.0)  # the one at 0.0 is exactly window_s old
    assert (state.status, state.failures) == ("closed", (1.0, 10.0))
    state = record_failure(state, config, 10.5)
    assert (state.status, state.opened_at, state.opened_count) == ("open", 10.5, 1)
    assert retry_after(state, config, 12.0) == 3.5
    assert allow(state, config, 15.4) == (state, False)
    state, ok = allow(state, config, 15.5)
    assert ok and state.status == "half_open" and state.probe_in_flight
    assert retry_after(state, config, 15.5) == 5.0  # if the probe fails
    assert allow(state, config, 15.6) == (state, False)
    state = record_failure(state, config, 16.0)
    assert (state.status, state.opened_at, state.opened_count) == ("open", 16.0, 2)
    state, ok = allow(state, config, 21.0)
    assert ok
    state = record_abandoned(state, config, 21.5)  # cancelled probe: the slot frees
    assert (state.status, state.probe_in_flight) == ("half_open", False)
    assert retry_after(state, config, 21.5) == 0.0
    state, ok = allow(state, config, 21.6)
    assert ok
    state = record_success(state, config, 22.0)
    assert state == BreakerState(opened_count=2)


def test_stale_outcomes_while_open_change_nothing() -> None:
    config = BreakerConfig(failures=1, window_s=10.0, reset_s=5.0)
    opened = record_failure(BreakerState(), config, 0.0)
    assert record_success(opened, config, 1.0) == opened
    assert record_failure(opened, config, 4.0) == opened  # does not postpone the probe
    assert record_abandoned(opened, config, 4.0) == opened


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"window_s": 0.0}, {"reset_s": -1.0}], ids=str)
def test_bad_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**kwargs)


# -- the shell --------------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_shell_fails_fast_with_a_clear_error_and_reports() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("http://evo:8080/", BreakerConfig(3, 60.0, 30.0), clock=clock)
    assert repr(breaker) == "<CircuitBreaker http://evo:8080 closed 0/3 failures>"
    assert breaker.allow() is False
    breaker.record_failure()
    breaker.record_failure()
    assert repr(breaker) == "<CircuitBreaker http://evo:8080 closed 2/3 failures>"
    assert breaker.snapshot() == {
        "status": "closed",
        "failures_in_window": 2,
        "opened_at": None,
        "retry_after_s": 0.0,
        "opened_count": 0,
    }
    clock.now += 61  # both expire
    assert repr(breaker) == "<CircuitBreaker http://evo:8080 closed 0/3 failures>"
    for _ in range(3):
        breaker.record_failure()
    opened_at = clock.now
    clock.now += 18
    assert repr(breaker) == "<CircuitBreaker http://evo:8080 open, next probe in 12.0 s>"
    with pytest.raises(EvolutionCircuitOpen) as refused:
        breaker.allow(method="GET", path="/instance/fetchInstances")
    error = refused.value
    assert str(error) == (
        "Evolution API at http://evo:8080 is unavailable (circuit open; next probe in 12.0 s)"
    )
    assert isinstance(error, EvolutionUnavailable) and not error.retryable
    assert error.retry_after_s == 12.0 and error.request_sent is False
    assert (error.method, error.path, error.status) == ("GET", "/instance/fetchInstances", None)
    assert breaker.snapshot() == {
        "status": "open",
        "failures_in_window": 0,
        "opened_at": opened_at,
        "retry_after_s": 12.0,
        "opened_count": 1,
    }
    clock.now += 12
    assert breaker.allow() is True  # the probe
    assert repr(breaker) == "<CircuitBreaker http://evo:8080 half_open, probe in flight>"
    with pytest.raises(EvolutionCircuitOpen, match="a probe request is in flight"):
        breaker.allow()
    breaker.record_abandoned()
    assert repr(breaker) == "<CircuitBreaker http://evo:8080 half_open>"
    assert breaker.allow() is True
    breaker.record_success()
    assert breaker.snapshot()["status"] == "closed"
    assert breaker.snapshot()["opened_count"] == 1


def test_shell_repr_outside_trio_uses_no_clock() -> None:
    breaker = CircuitBreaker("http://evo")  # default clock: trio.current_time
    assert repr(breaker) == "<CircuitBreaker http://evo closed 0/5 failures>"


def test_shell_never_shows_credentials_of_the_url() -> None:
    breaker = CircuitBreaker("https://user:s3cret@evo.example:8443/api/", clock=FakeClock())
    assert breaker.base_url == "https://evo.example:8443/api"
    for _ in range(5):
        breaker.record_failure()
    with pytest.raises(EvolutionCircuitOpen) as refused:
        breaker.allow()
    assert "s3cret" not in str(refused.value) + repr(breaker) + str(breaker.snapshot())
