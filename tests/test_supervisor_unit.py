"""The supervisor on its own (actors.supervisor.Supervisor), with fake actors made through
`actor_factory`, the same narrow interface as `InstanceActor(name, deps, mailbox, publish)`:
restarts with backoff, parking once the restart budget is spent, operator restart and stop,
the inbox doorbell.  Time is trio's MockClock with autojump, so backoffs are exact.

`Supervisor.run` boots every known instance from `deps.pool` (list_instances, then orphan
marking): the tests that need no database run it with `boot=False` and a `deps` that fails the
test if the pool is read at all; the boot itself and the routing of unknown names run against
the real database of conftest.
"""

from __future__ import annotations

import functools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio
from trio.testing import MockClock

from auzap_actors.actors.deps import ActorDeps
from auzap_actors.actors.instance_actor import Preload, Started
from auzap_actors.actors.mailbox import ActorUnavailable, Mailbox, reply
from auzap_actors.actors.messages import Barrier, Crash, DrainInbox, InjectedCrash
from auzap_actors.actors.supervisor import Supervisor
from auzap_actors.core.health import HealthPolicy, HealthState
from auzap_actors.core.supervision import RestartPolicy
from auzap_actors.core.views import InstanceSnapshot
from auzap_actors.store import instances
from auzap_actors.store.db import open_pool

from .helpers import eventually

# Crash budget of these tests: 3 restarts within a minute, waits of 1 s, 2 s, then 3 s (cap).
POLICY = RestartPolicy(max_restarts=3, window_s=60, backoff_base_s=1, backoff_cap_s=3)


@dataclass(frozen=True, slots=True)
class Hold:
    """Keeps a fake actor busy (letters queue behind it) until the script releases it."""


@dataclass
class Script:
    """What the fake actors of one test do, and what they saw."""

    crash_on_start: dict[str, int] = field(default_factory=dict)  # crashes left, per name
    runs: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    received: defaultdict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    ended: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    release: trio.Event = field(default_factory=trio.Event)
    expect_open: set[str] = field(default_factory=set)  # names whose snapshot wants checks
    # What the supervisor handed each start of each actor (the boot's row, or None).
    preloads: defaultdict[str, list[Preload | None]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def factory(
        self,
        name: str,
        deps: ActorDeps,
        mailbox: Mailbox,
        publish: Callable[[InstanceSnapshot], None],
        preload: Preload | None = None,
    ) -> FakeActor:
        self.preloads[name].append(preload)
        return FakeActor(self, name, mailbox, publish)


class FakeActor:
    """An instance actor reduced to its contract with the supervisor: publish a snapshot,
    report started, then answer letters in order.  `Crash` raises (after answering its caller,
    as the real actor does), `Hold` waits for the script, a `DrainInbox` answers the doorbell,
    everything else is answered None."""

    def __init__(
        self,
        script: Script,
        name: str,
        mailbox: Mailbox,
        publish: Callable[[InstanceSnapshot], None],
    ) -> None:
        self.script = script
        self.name = name
        self.mailbox = mailbox
        self.publish = publish

    async def run(self, *, task_status: Started) -> None:
        script = self.script
        script.runs[self.name].append(trio.current_time())
        # Idle (never open) unless the script says otherwise: only those get health ticks.
        watched = self.name in script.expect_open
        self.publish(
            InstanceSnapshot(self.name, None, None, health=HealthState(expect_open=watched))
        )
        task_status.started()
        try:
            left = script.crash_on_start.get(self.name, 0)
            if left:
                script.crash_on_start[self.name] = left - 1
                raise InjectedCrash(f"crash on start, {left - 1} more to come")
            while True:
                letter = await self.mailbox.get()
                script.received[self.name].append(letter.message)
                match letter.message:
                    case Crash(reason=reason):
                        error = InjectedCrash(reason)
                        reply(letter, False, error)
                        raise error
                    case Hold():
                        await script.release.wait()
                    case DrainInbox():
                        self.mailbox.answer_doorbell()
                reply(letter, True, None)
        finally:
            script.ended[self.name] += 1


class FakeDeps:
    """Stands for ActorDeps.  The fakes read nothing of it; the supervisor reads `pool` only to
    boot and to route unknown names (without a pool, reading it fails the test), and the
    health policy for its node-wide health timer."""

    def __init__(self, pool: Any = None, health_policy: HealthPolicy | None = None) -> None:
        self._pool = pool
        self.health_policy = health_policy or HealthPolicy()

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise AssertionError("the supervisor read deps.pool")
        return self._pool


@asynccontextmanager
async def supervising(
    script: Script, policy: RestartPolicy = POLICY, pool: Any = None
) -> AsyncIterator[Supervisor]:
    """A running supervisor whose actors are the script's fakes (booting from `pool` when one
    is given, else not booting at all)."""
    supervisor = Supervisor(
        cast(ActorDeps, FakeDeps(pool)), policy=policy, actor_factory=script.factory
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(supervisor.run, boot=pool is not None))
        yield supervisor
        nursery.cancel_scope.cancel()


async def until(check: Callable[[], bool], timeout: float = 60) -> None:
    """Poll in virtual time: the short sleeps between looks are the nearest deadline, so the
    clock never jumps past the state we look for (a parked actor's cool-down, say)."""
    await eventually(check, timeout=timeout, interval=0.01)


def _status(supervisor: Supervisor, name: str) -> str | None:
    child = supervisor.get(name)
    return child.status if child is not None else None


async def _park(supervisor: Supervisor, script: Script, name: str) -> float:
    """Start `name` crashing on each of its first 4 starts: with POLICY it is parked after the
    fourth.  Returns the virtual time it was started at."""
    script.crash_on_start[name] = 4
    await supervisor.ensure_actor(name)
    await until(lambda: _status(supervisor, name) == "crashed")
    return script.runs[name][0]


async def test_a_crashing_actor_restarts_with_backoff_then_is_parked_and_siblings_never_notice(
    autojump_clock: MockClock,
) -> None:
    script = Script()
    async with supervising(script) as supervisor:
        sibling = await supervisor.ensure_actor("user_b")
        start = await _park(supervisor, script, "user_a")

        # Started 4 times: 3 restarts after waits of 1, 2 and 3 s (the cap), then parked.
        assert [t - start for t in script.runs["user_a"]] == [0, 1, 3, 6]
        parked = supervisor.get("user_a")
        assert parked is not None and parked.status == "crashed" and parked.restarts == 3
        assert parked.last_error is not None and "InjectedCrash" in parked.last_error
        with pytest.raises(ActorUnavailable):
            supervisor.cast("user_a", Barrier())
        with pytest.raises(ActorUnavailable):
            await supervisor.call("user_a", Barrier(), 5)
        assert len(script.runs["user_a"]) == 4, "a call does not wake a parked actor"

        # The sibling never noticed: the same record, never restarted, still answering.
        assert supervisor.get("user_b") is sibling
        assert sibling.status == "running" and sibling.restarts == 0
        assert await supervisor.call("user_b", Barrier(), 5) is None
        assert len(script.runs["user_b"]) == 1 and script.received["user_b"] == [Barrier()]


async def test_an_operator_restart_unparks_with_a_fresh_budget(autojump_clock: MockClock) -> None:
    script = Script()
    async with supervising(script) as supervisor:
        await _park(supervisor, script, "user_a")

        revived = await supervisor.restart_actor("user_a")
        assert revived.status == "running" and supervisor.get("user_a") is revived
        assert revived.restarts == 4  # the 3 crash restarts and the operator's
        assert await supervisor.call("user_a", Barrier(), 5) is None
        assert len(script.runs["user_a"]) == 5

        # A fresh budget: the next crash waits the first delay again and is not parked.
        crashed_at = trio.current_time()
        supervisor.cast("user_a", Crash("after the revival"))
        await until(lambda: len(script.runs["user_a"]) == 6)
        assert script.runs["user_a"][-1] - crashed_at == pytest.approx(POLICY.backoff_base_s)
        await until(lambda: _status(supervisor, "user_a") == "running")
        assert await supervisor.call("user_a", Barrier(), 5) is None


async def test_stop_answers_queued_calls_with_actor_unavailable(autojump_clock: MockClock) -> None:
    script = Script()
    async with supervising(script) as supervisor:
        child = await supervisor.ensure_actor("user_a")
        supervisor.cast("user_a", Hold())
        errors: list[Exception] = []
        answers: list[Any] = []

        async def queued_call() -> None:
            try:
                answers.append(await supervisor.call("user_a", Barrier(), 60))
            except Exception as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(queued_call)
            await until(lambda: child.mailbox.size == 3)  # behind the Hold being handled
            stopped = await supervisor.stop_actor("user_a")
        assert stopped is child and child.status == "stopped"
        assert answers == [] and len(errors) == 3
        assert all(isinstance(e, ActorUnavailable) for e in errors), errors
        assert script.received["user_a"] == [Hold()] and script.ended["user_a"] == 1

        # Stopped by an operator, it stays down until an operator starts it again.
        with pytest.raises(ActorUnavailable):
            await supervisor.call("user_a", Barrier(), 5)
        with pytest.raises(ActorUnavailable):
            supervisor.cast("user_a", Barrier())
        assert len(script.runs["user_a"]) == 1
        started = await supervisor.ensure_actor("user_a", revive=True)
        assert started.status == "running" and len(script.runs["user_a"]) == 2
        assert await supervisor.call("user_a", Barrier(), 5) is None


def test_the_mailbox_doorbell_coalesces_and_is_never_lost() -> None:
    box = Mailbox("user_a", capacity=2)
    for _ in range(3):
        box.ring(DrainInbox())
    assert box.size == 1, "three rings, one letter"
    letter = box.get_nowait()
    assert letter.message == DrainInbox() and letter.reply is None
    assert box.answer_doorbell() is True
    assert box.answer_doorbell() is False, "answered once"
    box.ring(DrainInbox())
    assert box.size == 1, "answered, it rings again"

    full = Mailbox("user_b", capacity=1)
    full.cast("busy")
    full.ring(DrainInbox())  # no MailboxFull: the actor answers the bell after its letter
    assert full.size == 1 and full.get_nowait().message == "busy"
    assert full.answer_doorbell() is True


async def test_rings_while_the_actor_is_busy_make_one_drain(autojump_clock: MockClock) -> None:
    script = Script()
    async with supervising(script) as supervisor:
        child = await supervisor.ensure_actor("user_a")
        supervisor.cast("user_a", Hold())
        await until(lambda: script.received["user_a"] == [Hold()])
        for _ in range(5):
            supervisor.notify_inbox({"user_a"})
        assert child.mailbox.size == 1
        script.release.set()
        assert await supervisor.call("user_a", Barrier(), 5) is None
        assert script.received["user_a"] == [Hold(), DrainInbox(), Barrier()]
        supervisor.notify_inbox({"user_a"})  # answered: the next ring is a new letter
        assert await supervisor.call("user_a", Barrier(), 5) is None
        assert script.received["user_a"][3:] == [DrainInbox(), Barrier()]


async def test_notify_inbox_rings_only_the_named_actors_that_take_letters(
    autojump_clock: MockClock,
) -> None:
    script = Script()
    async with supervising(script) as supervisor:
        for name in ("user_a", "user_b", "user_c", "user_stopped"):
            await supervisor.ensure_actor(name)
        await supervisor.stop_actor("user_stopped")
        await _park(supervisor, script, "user_parked")

        supervisor.notify_inbox({"user_a", "user_c", "user_stopped", "user_parked"})
        for name in ("user_a", "user_b", "user_c"):
            assert await supervisor.call(name, Barrier(), 5) is None
        assert script.received["user_a"] == [DrainInbox(), Barrier()]
        assert script.received["user_b"] == [Barrier()]
        assert script.received["user_c"] == [DrainInbox(), Barrier()]
        # A stopped or parked actor is neither rung nor started by the doorbell.
        for name in ("user_stopped", "user_parked"):
            child = supervisor.get(name)
            assert child is not None and child.mailbox.size == 0, name
            assert script.received[name] == [], name
        assert _status(supervisor, "user_stopped") == "stopped"
        assert len(script.runs["user_stopped"]) == 1
        assert _status(supervisor, "user_parked") == "crashed"
        assert len(script.runs["user_parked"]) == 4


async def test_boot_starts_known_instances_and_unknown_names_are_routed(
    database_url: str,
) -> None:
    """With the real database (and the real clock: PostgreSQL answers in real time)."""
    known, later = uuid.uuid4(), uuid.uuid4()
    known_name, later_name = f"user_{known}", f"user_{later}"
    script = Script()
    async with open_pool(database_url, min_size=1, max_size=2) as pool:
        await instances.ensure_instance(pool, known_name, known, None)
        await _store_webhook(pool, "user_ghost", "boot")
        async with supervising(script, pool=pool) as supervisor:
            # The boot starts the known instance's actor and flags the ghost's rows as orphans.
            await eventually(lambda: known_name in script.runs)
            await eventually(lambda: _outcomes(pool, "user_ghost"), timeout=10)
            assert await _outcomes(pool, "user_ghost") == ["orphan"]
            assert sorted(c.name for c in supervisor.children()) == [known_name]

            # Later rows for names without an actor: a known instance gets its actor started,
            # an unknown one has its rows flagged.
            await instances.ensure_instance(pool, later_name, later, None)
            await _store_webhook(pool, "user_ghost_2", "later")
            supervisor.notify_inbox({later_name, "user_ghost_2"})
            await eventually(lambda: _status(supervisor, later_name) == "running", timeout=10)
            await eventually(lambda: _outcomes(pool, "user_ghost_2"), timeout=10)
            assert await _outcomes(pool, "user_ghost_2") == ["orphan"]
            assert sorted(c.name for c in supervisor.children()) == sorted([known_name, later_name])
            assert len(script.runs[known_name]) == len(script.runs[later_name]) == 1


async def _store_webhook(pool: Any, name: str, key: str) -> None:
    await pool.execute(
        "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
        " VALUES ($1, $2, 'connection.update', '{}'::jsonb)",
        f"{name}-{key}",
        name,
    )


async def _outcomes(pool: Any, name: str) -> list[str | None]:
    rows = await pool.fetch(
        "SELECT outcome FROM webhook_inbox WHERE instance_name = $1 ORDER BY id", name
    )
    outcomes = [r["outcome"] for r in rows]
    return outcomes if all(o is not None for o in outcomes) else []
