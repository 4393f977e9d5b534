"""The per-instance step (`core.instance.step`): scripted scenarios, and invariants under
arbitrary input sequences (hypothesis).  Pure: no database, no clock, no actor."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from auzap_actors.core.health import CheckNotOpen, HealthPolicy, HealthState
from auzap_actors.core.instance import (
    Boot,
    CallReconnect,
    ConnectAnswered,
    Created,
    Effect,
    EnsureCreated,
    Feed,
    Forgotten,
    Input,
    Observed,
    Persist,
    Publish,
    ReconnectOutcome,
    ResumeAnswered,
    ResumeSession,
    RunCheck,
    SettingsChanged,
    SyncWebhook,
    Tick,
    step,
)
from auzap_actors.core.state import (
    LOGGED_OUT_REASONS,
    CallConnect,
    CallLogout,
    ConnectionClosed,
    ConnectionConnecting,
    ConnectionOpened,
    ConnectRequested,
    InstanceState,
    LoggedOut,
    LogoutRequested,
    QrExpired,
    QrUpdated,
    Status,
    ends_session,
)
from auzap_actors.core.views import InstanceSnapshot

from .helpers import open_snapshot

POLICY = HealthPolicy(interval_s=60, alert_threshold=2, max_failures=3, max_reconnects=3)
QR = "data:image/png;base64,AAA"


def _fresh_snapshot() -> InstanceSnapshot:
    """The row a connect has just created, as the store loads it: no session can exist for it
    yet, and nothing is expected open."""
    return InstanceSnapshot(
        "user_x",
        "u1",
        None,
        state=InstanceState(sessionless=True),
        health=HealthState(expect_open=False),
    )


# Evolution's news that a session's credentials are gone (logout.instance / remove.instance,
# a final close): what a deleted instance sends late, after its successor's row exists.
LATE_LOGOUTS = (
    LoggedOut(),
    ConnectionClosed(401),
    ConnectionClosed(403),
    ConnectionClosed(402),
    ConnectionClosed(406),
)


@dataclass
class Run:
    """Feeds inputs the way the actor does: `Feed` and `EnsureCreated` are carried out at once
    (depth first); every other effect is recorded for the test to read."""

    snap: InstanceSnapshot
    now: float = 1000.0
    effects: list[Effect] = field(default_factory=list)

    @property
    def status(self) -> Status:
        """Read through a property: mypy would keep narrowing `snap.state.status`."""
        return self.snap.state.status

    @property
    def health(self) -> HealthState:
        return self.snap.health

    def take(self, item: Input, *, jitter: float = 0.5) -> list[Effect]:
        before = self.snap
        self.snap, effects = step(self.snap, item, self.now, POLICY, jitter)
        assert Persist() not in effects[1:], "Persist comes first, once"
        if (before.state, before.health.status) != (self.snap.state, self.snap.health.status):
            assert effects[0] == Persist(), "a new status is written before anything else"
        seen: list[Effect] = []
        for effect in effects:
            seen.append(effect)
            if isinstance(effect, Feed):
                seen += self.take(effect.input, jitter=jitter)
            elif isinstance(effect, EnsureCreated):
                seen += self.take(Created(), jitter=jitter)
        self.effects += seen
        return seen


def _notifications(effects: list[Effect]) -> list[str]:
    return [
        str(e.data["title"]) for e in effects if isinstance(e, Publish) and e.type == "notification"
    ]


def _check(run: Run, state: str, reason: int | None = None) -> list[Effect]:
    """One periodic check answered `state`."""
    run.now += 60
    effects = run.take(Tick())
    checks = [e for e in effects if isinstance(e, RunCheck)]
    assert len(checks) == 1
    return effects + run.take(Observed("periodic", state, reason))


def test_a_silent_drop_alerts_at_two_and_reconnects_at_three_then_says_reconnected() -> None:
    run = Run(open_snapshot())
    first = _check(run, "connecting")
    # Open is never seen beside a failed check: the status moves in the same step.
    assert run.snap.state.status is Status.CONNECTING and run.snap.health.status == "unhealthy"
    assert first[1] == Persist() and _notifications(first) == []
    assert _notifications(_check(run, "connecting")) == ["WhatsApp connection problem"]
    third = _check(run, "connecting")
    assert _notifications(third) == ["Reconnecting WhatsApp"]
    assert [e for e in third if isinstance(e, CallReconnect)] == [
        CallReconnect(1, restart=True, create_first=False)
    ]
    assert run.snap.health.reconnecting
    answered = run.take(ReconnectOutcome("open"))
    # One notification: "reconnected" replaces "connected".
    assert _notifications(answered) == ["WhatsApp reconnected"]
    assert run.status == Status.OPEN and run.health.status == "healthy"
    assert answered[0] == Persist()


def test_a_logout_seen_by_a_check_is_final() -> None:
    run = Run(open_snapshot())
    effects = _check(run, "close", 401)
    assert run.snap.state.status is Status.DISCONNECTED
    assert not run.snap.health.expect_open
    assert _notifications(effects) == ["WhatsApp disconnected"]
    for _ in range(10):
        run.now += 60
        assert run.take(Tick()) == []  # nothing is checked, nothing reconnects


def test_connect_creates_the_instance_in_evolution_first() -> None:
    run = Run(InstanceSnapshot("user_x", "u1", None))
    effects = run.take(ConnectRequested())
    assert effects[:2] == [EnsureCreated(), Feed(ConnectRequested())]
    assert run.snap.in_evolution and run.snap.state.status is Status.CONNECTING
    assert CallConnect() in effects
    run.take(ConnectAnswered("connecting", QR))
    assert run.status == Status.WAITING_QR and run.snap.state.qr_code == QR


def test_settings_are_written_only_when_they_change() -> None:
    run = Run(open_snapshot())
    effects = run.take(SettingsChanged(auto_reply=True, prompt="Be brief."))
    assert effects == [Persist()]
    assert run.snap.auto_reply and run.snap.auto_reply_prompt == "Be brief."
    assert run.snap.updated_at == run.now
    # An absent setting is left as it is.
    run.now += 1
    assert run.take(SettingsChanged(auto_reply=False)) == [Persist()]
    assert not run.snap.auto_reply and run.snap.auto_reply_prompt == "Be brief."
    # Nothing new: no write, no frame, and the snapshot is the same one.
    before = run.snap
    run.now += 1
    assert run.take(SettingsChanged(auto_reply=False, prompt="Be brief.")) == []
    assert run.take(SettingsChanged()) == []
    assert run.snap is before


def test_boot_resumes_a_session_that_closed_while_down() -> None:
    run = Run(open_snapshot())
    effects = run.take(Boot())
    assert effects == [SyncWebhook(), RunCheck("boot", full=False, shared=True)]
    resume = run.take(Observed("boot", "close", 428))
    assert resume == [ResumeSession(CheckNotOpen("close", 428))]
    assert run.take(ResumeAnswered(True, CheckNotOpen("close", 428))) == []  # still open
    assert run.snap.state.status is Status.OPEN and run.snap.health.consecutive_failures == 0


def test_every_fifth_check_is_a_full_one_and_evolution_forgetting_means_create_again() -> None:
    run = Run(open_snapshot())
    fulls = []
    for _ in range(10):
        run.now += 60
        (check,) = run.take(Tick())
        assert isinstance(check, RunCheck)
        fulls.append(check.full)
        run.take(Observed("periodic", "open"))
    assert fulls == [False, False, False, True, False, False, False, False, True, False]
    run.take(Forgotten())
    for _ in range(3):
        _check(run, "connecting")
    assert [e for e in run.effects if isinstance(e, CallReconnect)][-1].create_first


def test_evolution_unreachable_blames_no_instance() -> None:
    run = Run(open_snapshot())
    for _ in range(6):
        run.now += 60
        run.take(Tick())
        effects = run.take(Observed("periodic", unreachable="connection refused"))
        assert _notifications(effects) == []
    assert run.snap.state.status is Status.OPEN
    assert run.snap.health.status == "error" and run.snap.health.consecutive_failures == 0


# ---- stale logouts (a deleted instance's, or a late copy) ----------------------------------


def _waiting_for_scan(start: InstanceSnapshot) -> Run:
    run = Run(start)
    run.take(ConnectRequested())
    run.take(ConnectAnswered("connecting", QR))
    assert run.status is Status.WAITING_QR
    return run


def test_a_deleted_instances_late_logout_never_reaches_the_row_that_replaced_it() -> None:
    run = Run(_fresh_snapshot())
    run.take(ConnectRequested())  # the connect is in flight: connecting, no QR yet
    for late in LATE_LOGOUTS:
        before = run.snap
        assert run.take(late) == [], late  # no write, no frame, no call
        assert run.snap is before
    run.take(ConnectAnswered("connecting", QR))
    for late in LATE_LOGOUTS:
        assert run.take(late) == [], late
    assert run.status is Status.WAITING_QR and run.snap.state.qr_code == QR
    assert run.snap.health.issues == ()


def test_a_fresh_session_seen_open_is_logged_out_for_real_once() -> None:
    run = _waiting_for_scan(_fresh_snapshot())
    opened = run.take(ConnectionOpened("5511999999999"))
    assert _notifications(opened) == ["WhatsApp connected"]
    assert opened[0] == Persist() and not run.snap.state.sessionless
    logged_out = run.take(LoggedOut())
    assert logged_out[0] == Persist() and _notifications(logged_out) == ["WhatsApp disconnected"]
    assert run.status is Status.DISCONNECTED and run.snap.state.sessionless
    assert not run.snap.health.expect_open
    # The rest of Evolution's sequence, and a late copy once the user connects again: stale.
    assert run.take(ConnectionClosed(401)) == []
    run.take(ConnectRequested())
    run.take(ConnectAnswered("connecting", QR))
    assert run.take(ConnectionClosed(401)) == [] and run.status is Status.WAITING_QR


def test_a_qr_flow_refused_by_whatsapp_still_ends() -> None:
    """corpus 53-54: the QR limit message, then connection.update refused."""
    run = _waiting_for_scan(_fresh_snapshot())
    ended = run.take(QrExpired())
    assert _notifications(ended) == ["QR code expired"] and run.status is Status.DISCONNECTED
    assert run.snap.state.qr_code is None
    assert run.take(QrExpired()) == []
    # Evolution logs the refused socket out: nothing more to tell.
    assert run.take(ConnectionClosed(401)) == [] and run.status is Status.DISCONNECTED


def test_the_users_logout_makes_evolutions_late_logout_stale() -> None:
    run = Run(open_snapshot())
    asked = run.take(LogoutRequested())
    assert CallLogout() in asked and run.snap.state.sessionless
    # Evolution logs out asynchronously; the user connects again before its close/401 comes.
    run.take(ConnectRequested())
    run.take(ConnectAnswered("connecting", QR))
    for late in (LoggedOut(), ConnectionClosed(401)):
        assert run.take(late) == []
    assert run.status is Status.WAITING_QR


def test_an_adopted_instance_may_have_a_session_so_its_logouts_count() -> None:
    created = Run(_fresh_snapshot())
    assert created.take(Created()) == [] and created.snap.state.sessionless
    run = Run(_fresh_snapshot())
    assert run.take(Created(adopted=True)) == [Persist()]
    assert not run.snap.state.sessionless
    run.take(ConnectRequested())
    run.take(ConnectAnswered("connecting", QR))
    assert _notifications(run.take(LoggedOut())) == ["WhatsApp disconnected"]


# ---- invariants under arbitrary sequences ---------------------------------------------------

webhook_events = st.one_of(
    st.builds(QrUpdated, st.sampled_from([QR, "data:image/png;base64,BBB"])),
    st.just(QrExpired()),
    st.builds(ConnectionOpened, st.sampled_from([None, "5511999999999"])),
    st.just(ConnectionConnecting()),
    st.builds(ConnectionClosed, st.sampled_from([None, 401, 403, 428, 500, 515])),
    st.just(LoggedOut()),
)
states = st.sampled_from(["open", "connecting", "close"])
purposes = st.sampled_from(["periodic", "boot", "reconcile"])
inputs: st.SearchStrategy[Input] = st.one_of(
    webhook_events,
    st.just(ConnectRequested()),
    st.just(LogoutRequested()),
    st.just(Boot()),
    st.just(Tick()),
    st.builds(Created, st.booleans()),
    st.just(Forgotten()),
    # Evolution's three kinds of answer: a state (with fetchInstances' reason), 404, no answer.
    st.builds(Observed, purposes, states, st.sampled_from([None, 401, 428, 515])),
    st.builds(Observed, purposes, missing=st.just(True)),
    st.builds(Observed, purposes, unreachable=st.just("timeout")),
    st.builds(ConnectAnswered, st.sampled_from(["open", "connecting", None]), st.just(QR)),
    st.builds(ResumeAnswered, st.booleans(), st.just(CheckNotOpen("close"))),
    st.builds(
        ReconnectOutcome,
        st.sampled_from(["open", "qr", "pending", "unreachable", "refused"]),
        st.just(QR),
    ),
)
starts = st.sampled_from(
    [open_snapshot(), InstanceSnapshot("user_x", "u1", "o1", in_evolution=True), _fresh_snapshot()]
)
LOGOUTS = (LogoutRequested, LoggedOut)


def _is_logout(item: Input) -> bool:
    if isinstance(item, LOGOUTS):
        return True
    if isinstance(item, ConnectionClosed):
        return item.reason in LOGGED_OUT_REASONS
    if isinstance(item, Observed) and item.purpose != "reconcile":
        return item.connection_state == "close" and item.reason_code in LOGGED_OUT_REASONS
    return False


@settings(max_examples=400, deadline=None)
@given(starts, st.lists(st.tuples(inputs, st.floats(0, 400), st.floats(0, 0.999)), max_size=40))
def test_invariants_hold_whatever_the_inputs(
    start: InstanceSnapshot, sequence: list[tuple[Input, float, float]]
) -> None:
    run = Run(start)
    logged_out = False
    for item, elapsed, jitter in sequence:
        run.now += elapsed
        before = run.snap
        effects = run.take(item, jitter=jitter)
        snap = run.snap
        # Without a session, Evolution's news of a logout is stale: nothing at all changes.
        if before.state.sessionless and ends_session(item):
            assert effects == [] and snap is before, item
        # No session: neither open nor watched (seen open is the only way out).
        if snap.state.sessionless:
            assert snap.state.status is not Status.OPEN and not snap.health.expect_open
        # Never "open" beside a failed check.
        assert not (snap.state.status is Status.OPEN and snap.health.status == "unhealthy")
        # The QR is shown only while waiting for a scan.
        assert (snap.state.qr_code is None) or snap.state.status is Status.WAITING_QR
        # A logout is never followed by an automatic reconnect until seen open again.
        logged_out = (logged_out or _is_logout(item)) and snap.state.status is not Status.OPEN
        if logged_out:
            assert not any(isinstance(e, CallReconnect) for e in effects), item
        # Status frames tell the truth: the last one is the new status.
        statuses = [
            e.data["status"] for e in effects if isinstance(e, Publish) and e.type == "status"
        ]
        if statuses and not any(isinstance(e, Feed | EnsureCreated) for e in effects):
            assert statuses[-1] == snap.state.status.value


@settings(max_examples=300, deadline=None)
@given(starts, st.lists(inputs, max_size=30), webhook_events)
def test_a_duplicated_webhook_never_notifies_twice(
    start: InstanceSnapshot, prefix: list[Input], event: Input
) -> None:
    run = Run(start)
    for item in prefix:
        run.now += 30
        run.take(item)
    run.take(event)
    assert _notifications(run.take(event)) == []
