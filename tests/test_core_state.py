"""The pure state machine: table completeness and invariants under arbitrary event sequences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from auzap_actors.core.state import (
    EVENT_TYPES,
    TRANSITIONS,
    AttentionRequired,
    CallConnect,
    CallLogout,
    ConnectionClosed,
    ConnectionConnecting,
    ConnectionOpened,
    ConnectRequested,
    Event,
    InstanceState,
    LoggedOut,
    LogoutRequested,
    Notify,
    QrExpired,
    QrUpdated,
    ReconnectRequested,
    ReportedClosed,
    ReportedConnecting,
    ReportedOpen,
    Status,
    state_diagram,
    transition,
)

events = st.one_of(
    st.just(ConnectRequested()),
    st.builds(
        QrUpdated, st.sampled_from(["data:image/png;base64,AAA", "data:image/png;base64,BBB"])
    ),
    st.just(QrExpired()),
    st.builds(
        ConnectionOpened,
        st.one_of(st.none(), st.from_regex(r"55\d{11}", fullmatch=True)),
        st.one_of(st.none(), st.text(max_size=10)),
    ),
    st.just(ConnectionConnecting()),
    st.builds(ConnectionClosed, st.sampled_from([None, 401, 403, 408, 428, 440, 500, 515])),
    st.just(LogoutRequested()),
    st.just(LoggedOut()),
    st.just(ReportedOpen()),
    st.just(ReportedConnecting()),
    st.just(ReportedClosed()),
    st.just(ReconnectRequested()),
    st.builds(AttentionRequired, st.just("reconnect failed 5 times")),
)


def test_table_is_complete() -> None:
    assert set(TRANSITIONS) == set(Status)
    for status, row in TRANSITIONS.items():
        assert set(row) == set(EVENT_TYPES), status
        assert all(isinstance(target, Status) for target in row.values())


@settings(max_examples=400)
@given(st.lists(events, max_size=40))
def test_no_sequence_reaches_an_undefined_state(sequence: list[Event]) -> None:
    state = InstanceState()
    for step, event in enumerate(sequence):
        before = state
        state, effects = transition(state, event, float(step))
        assert state.status in Status
        assert state.status is TRANSITIONS[before.status][type(event)]
        # A QR only while waiting for a scan; connected only while open.
        assert (state.qr_code is not None) == (state.status is Status.WAITING_QR)
        assert state.is_connected == (state.status is Status.OPEN)
        # Time of entry moves only on a status change.
        if state.status is before.status:
            assert state.since == before.since
        else:
            assert state.since == float(step)
        # Notifications only on a change of status: duplicated webhooks never notify twice.
        if any(isinstance(e, Notify) for e in effects):
            assert state.status is not before.status
        if any(isinstance(e, CallLogout) for e in effects):
            assert isinstance(event, LogoutRequested)


@given(st.lists(events, max_size=30))
def test_replaying_an_event_twice_is_like_once_for_notifications(sequence: list[Event]) -> None:
    state = InstanceState()
    for step, event in enumerate(sequence):
        state, _ = transition(state, event, float(step))
        again, effects = transition(state, event, float(step))
        if not isinstance(event, ConnectRequested | QrUpdated):
            assert again.status is state.status
            assert not any(isinstance(e, Notify) for e in effects)


def test_connect_flow() -> None:
    state = InstanceState()
    state, effects = transition(state, ConnectRequested(), 1.0)
    assert state.status is Status.CONNECTING and effects == (CallConnect(),)
    state, effects = transition(state, QrUpdated("data:image/png;base64,AAA"), 2.0)
    assert state.status is Status.WAITING_QR and state.qr_code and effects == ()
    state, effects = transition(state, ConnectionConnecting(), 2.5)
    assert state.status is Status.WAITING_QR, "Evolution's `connecting` keeps the QR"
    state, effects = transition(state, ConnectionOpened("5511999990000", "Ana"), 3.0)
    assert state.status is Status.OPEN and state.phone_number == "5511999990000"
    assert state.qr_code is None
    assert [type(e) for e in effects] == [Notify]
    assert "+5511999990000" in effects[0].message  # type: ignore[union-attr]


def test_logged_out_close_clears_the_phone_and_notifies_once() -> None:
    state = InstanceState(Status.OPEN, phone_number="5511999990000")
    state, effects = transition(state, ConnectionClosed(401), 1.0)
    assert state.status is Status.DISCONNECTED and state.phone_number is None
    assert len(effects) == 1 and isinstance(effects[0], Notify) and effects[0].level == "error"
    state, effects = transition(state, LoggedOut(), 2.0)
    assert effects == ()


def test_qr_expiry_notifies_connect_again() -> None:
    state = InstanceState(Status.WAITING_QR, qr_code="data:image/png;base64,AAA")
    state, effects = transition(state, QrExpired(), 1.0)
    assert state.status is Status.DISCONNECTED
    assert isinstance(effects[0], Notify) and "connect again" in effects[0].message
    # The `refused` connection.update that follows the limit message adds nothing.
    assert transition(state, QrExpired(), 2.0)[1] == ()


def test_stale_expiry_does_not_drop_an_open_session() -> None:
    state = InstanceState(Status.OPEN, phone_number="5511999990000")
    assert transition(state, QrExpired(), 1.0)[0].status is Status.OPEN


def test_needs_attention_waits_for_a_human() -> None:
    state = InstanceState(Status.NEEDS_ATTENTION)
    for event in (ReportedClosed(), ReportedConnecting(), ConnectionClosed(428), QrExpired()):
        assert transition(state, event, 1.0)[0].status is Status.NEEDS_ATTENTION
    state, effects = transition(state, ConnectRequested(), 2.0)
    assert state.status is Status.CONNECTING and effects == (CallConnect(),)


def test_diagram_is_drawn_from_the_table() -> None:
    diagram = state_diagram()
    assert diagram.startswith("stateDiagram-v2")
    assert "disconnected --> connecting: ConnectRequested" in diagram
    assert "waiting_qr --> open: ConnectionOpened" in diagram
