"""What lets one node hold 100k idle actors (issue 13, `bench actors`):

* the node-wide health scheduler (actors/health_timer.py): one task ticks the actors whose
  snapshot wants checks, never the idle ones, and starts ticking an actor as soon as it
  publishes a snapshot that wants them (fake actors, trio's MockClock with autojump);
* the bulk boot: actors start from the rows the supervisor read a page at a time, only those
  with pending inbox rows or open replies query at start, and a restart after a crash reads
  its row again (the real InstanceActor on the real database);
* the lazy composer: an actor runs one only when it has replies to work on.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import trio
from trio.testing import MockClock

from auzap_actors.actors import supervisor as supervisor_module
from auzap_actors.actors.deps import ActorDeps
from auzap_actors.actors.hub import Hub
from auzap_actors.actors.instance_actor import InstanceActor, Preload
from auzap_actors.actors.mailbox import Mailbox
from auzap_actors.actors.messages import Barrier, Crash, HealthTick
from auzap_actors.actors.supervisor import Supervisor
from auzap_actors.core.health import HealthPolicy, HealthState
from auzap_actors.core.views import InstanceSnapshot
from auzap_actors.evolution.client import EvolutionClient
from auzap_actors.store import instances
from auzap_actors.store.db import open_pool

from .helpers import eventually
from .payloads import envelope, text_message
from .test_supervisor_unit import POLICY, FakeDeps, Script

INTERVAL = 60.0


@asynccontextmanager
async def scheduled(script: Script) -> AsyncIterator[Supervisor]:
    policy = HealthPolicy(interval_s=INTERVAL)
    supervisor = Supervisor(
        cast(ActorDeps, FakeDeps(health_policy=policy)), policy=POLICY, actor_factory=script.factory
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(supervisor.run, boot=False))
        yield supervisor
        nursery.cancel_scope.cancel()


def _ticks(script: Script, name: str) -> int:
    return sum(1 for m in script.received[name] if isinstance(m, HealthTick))


async def test_the_node_scheduler_ticks_open_actors_only_and_starts_on_opening(
    autojump_clock: MockClock,
) -> None:
    script = Script(expect_open={"user_open"})
    async with scheduled(script) as supervisor:
        for name in ("user_open", "user_idle"):
            await supervisor.ensure_actor(name)
        assert "user_open" in supervisor.health and "user_idle" not in supervisor.health

        # Ten intervals: the open actor is ticked about once per interval (jittered), the
        # idle one never (it is not even scheduled).
        await trio.sleep(10 * INTERVAL)
        assert 8 <= _ticks(script, "user_open") <= 12
        assert _ticks(script, "user_idle") == 0
        assert len(supervisor.health) == 1

        # The idle instance is seen open (its actor publishes a snapshot that wants checks):
        # it is ticked from then on, within one interval.
        idle = supervisor.get("user_idle")
        assert idle is not None and idle.snapshot is not None
        opened = replace(idle.snapshot, health=HealthState(expect_open=True))
        idle.publish(opened)
        await trio.sleep(INTERVAL * 1.01)
        assert _ticks(script, "user_idle") >= 1
        await trio.sleep(5 * INTERVAL)
        assert 5 <= _ticks(script, "user_idle") <= 8

        # A logout (no longer expected open): its ticks stop, and so do a stopped actor's.
        idle.publish(replace(opened, health=HealthState(expect_open=False)))
        await supervisor.stop_actor("user_open")
        await trio.sleep(2 * INTERVAL)
        before = (_ticks(script, "user_idle"), _ticks(script, "user_open"))
        await trio.sleep(5 * INTERVAL)
        assert (_ticks(script, "user_idle"), _ticks(script, "user_open")) == before
        assert len(supervisor.health) == 0


async def test_a_restarted_actor_that_wants_checks_is_ticked_again(
    autojump_clock: MockClock,
) -> None:
    script = Script(expect_open={"user_a"})
    async with scheduled(script) as supervisor:
        await supervisor.ensure_actor("user_a")
        await trio.sleep(3 * INTERVAL)
        first = _ticks(script, "user_a")
        assert first >= 2
        await supervisor.restart_actor("user_a")
        await trio.sleep(5 * INTERVAL)
        assert _ticks(script, "user_a") >= first + 4
        assert len(script.runs["user_a"]) == 2


# ---- bulk boot and lazy composer: the real actor on the real database --------------------------


class Recorder:
    """The real InstanceActor, made through a factory that keeps what each start was given."""

    def __init__(self) -> None:
        self.preloads: dict[str, list[Preload | None]] = {}
        self.actors: dict[str, InstanceActor] = {}

    def factory(
        self,
        name: str,
        deps: ActorDeps,
        mailbox: Mailbox,
        publish: Callable[[InstanceSnapshot], None],
        preload: Preload | None = None,
    ) -> InstanceActor:
        self.preloads.setdefault(name, []).append(preload)
        actor = InstanceActor(name, deps, mailbox, publish, preload)
        self.actors[name] = actor
        return actor


@asynccontextmanager
async def booted(pool: Any, recorder: Recorder) -> AsyncIterator[Supervisor]:
    deps = ActorDeps(
        pool,
        EvolutionClient("http://127.0.0.1:9", "unused-key"),  # never called: none is created
        Hub(),
        "webhook-secret",
        now=time.time,  # epoch seconds, as the service runs (rows hold wall-clock times)
    )
    supervisor = Supervisor(deps, policy=POLICY, actor_factory=recorder.factory)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        yield supervisor
        nursery.cancel_scope.cancel()


async def _new_instance(pool: Any) -> str:
    user = uuid.uuid4()
    name = f"user_{user}"
    await instances.ensure_instance(pool, name, user, None)
    return name


async def test_the_boot_starts_actors_from_paged_rows_and_applies_pending_inbox_rows(
    database_url: str, monkeypatch: Any
) -> None:
    # Pages of 2 rows: five instances take three pages (and an empty fourth).
    monkeypatch.setattr(supervisor_module, "BOOT_PAGE", 2)
    recorder = Recorder()
    async with open_pool(database_url, min_size=1, max_size=4) as pool:
        names = [await _new_instance(pool) for _ in range(5)]
        busy = names[2]
        body = envelope(
            "messages.upsert", busy, text_message("BOOT0001", "5511955550001@s.whatsapp.net", "oi")
        )
        await pool.execute(
            "INSERT INTO webhook_inbox (dedup_key, instance_name, event, payload)"
            " VALUES ($1, $2, 'messages.upsert', $3::text::jsonb)",
            "boot-pending-1",
            busy,
            json.dumps(body),
        )
        await pool.execute(
            "UPDATE whatsapp_instances SET profile_name = 'Loja Boot' WHERE instance_name = $1",
            names[0],
        )
        async with booted(pool, recorder) as supervisor:
            await eventually(
                lambda: all(
                    (c := supervisor.get(n)) is not None and c.status == "running" for n in names
                ),
                timeout=10,
            )
            # Every actor started from the row the boot read, none read its own.
            for name in names:
                (preload,) = recorder.preloads[name]
                assert preload is not None and preload.record.instance_name == name
                assert preload.pending_inbox is (name == busy)
                assert not preload.open_replies
            child = supervisor.get(names[0])
            assert child is not None and child.snapshot is not None
            assert child.snapshot.state.profile_name == "Loja Boot"

            # The pending row was applied by its actor at start, exactly once.
            await supervisor.call(busy, Barrier(), 10)
            rows = await pool.fetch(
                "SELECT outcome FROM webhook_inbox WHERE instance_name = $1", busy
            )
            assert [r["outcome"] for r in rows] == ["applied"]
            stored = await pool.fetchval(
                "SELECT count(*) FROM messages WHERE instance_name = $1 AND wa_message_id = $2",
                busy,
                "BOOT0001",
            )
            assert stored == 1

            # A crash: the restarted actor reads its row again (a change made since shows).
            await pool.execute(
                "UPDATE whatsapp_instances SET profile_name = 'Loja Nova' WHERE instance_name = $1",
                names[0],
            )
            supervisor.cast(names[0], Crash("test"))
            await eventually(
                lambda: (
                    len(recorder.preloads[names[0]]) == 2
                    and (c := supervisor.get(names[0])) is not None
                    and c.status == "running"
                ),
                timeout=10,
            )
            assert recorder.preloads[names[0]][1] is None
            child = supervisor.get(names[0])
            assert child is not None and child.snapshot is not None
            assert child.snapshot.state.profile_name == "Loja Nova"
            assert child.restarts == 1


async def test_only_an_actor_with_open_replies_runs_a_composer_and_resumes_them(
    database_url: str,
) -> None:
    recorder = Recorder()
    async with open_pool(database_url, min_size=1, max_size=4) as pool:
        quiet, waiting = await _new_instance(pool), await _new_instance(pool)
        await pool.execute(
            "UPDATE whatsapp_instances SET auto_reply = true WHERE instance_name = ANY($1)",
            [quiet, waiting],
        )
        # A reply decided before the restart, due already; the instance is not connected, so
        # the composer hands it to the step, which settles it failed (no provider call).
        due = datetime.now(UTC) - timedelta(seconds=5)
        await pool.execute(
            "INSERT INTO auto_replies (instance_name, trigger_wa_id, chat_jid, state, due_at,"
            " decided_at) VALUES ($1, 'LAZY0001', '5511955550002@s.whatsapp.net', 'decided',"
            " $2, $2)",
            waiting,
            due,
        )
        async with booted(pool, recorder) as supervisor:

            async def settled() -> bool:
                state = await pool.fetchval(
                    "SELECT state FROM auto_replies WHERE instance_name = $1", waiting
                )
                return state == "failed"

            await eventually(settled, timeout=10)
            (preload,) = recorder.preloads[waiting]
            assert preload is not None and preload.open_replies
            assert recorder.actors[waiting]._composer is not None
            # Auto-reply on, nothing open: no composer until a decision needs one.
            await supervisor.call(quiet, Barrier(), 10)
            assert recorder.actors[quiet]._composer is None
