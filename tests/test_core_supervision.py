"""Restart intensity of supervised actors as a pure decision (core.supervision): backoff,
the restart budget within its window, parking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from auzap_actors.core.supervision import RestartPolicy, decide_restart


def test_restart_budget_parks_after_max_restarts_in_window() -> None:
    policy = RestartPolicy(max_restarts=3, window_s=10, backoff_base_s=0.1, backoff_cap_s=0.25)
    history: tuple[float, ...] = ()
    delays = []
    for now in (1.0, 2.0, 3.0):
        decision = decide_restart(history, now, policy)
        assert decision.restart
        delays.append(decision.delay_s)
        history = decision.history
    assert delays == [0.1, 0.2, 0.25]
    assert not decide_restart(history, 4.0, policy).restart
    # Old crashes leave the window: the budget refills.
    assert decide_restart(history, 30.0, policy).restart


@given(st.lists(st.floats(0, 1000), max_size=20), st.floats(0, 2000))
def test_backoff_never_exceeds_cap(history: list[float], now: float) -> None:
    policy = RestartPolicy()
    decision = decide_restart(tuple(sorted(history)), now, policy)
    assert 0 <= decision.delay_s <= policy.backoff_cap_s
    assert len(decision.history) <= len(history) + 1
