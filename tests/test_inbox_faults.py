"""The inbox writer against a PostgreSQL that breaks: sessions killed, the server stopped for
seconds, the database turned read-only, a TCP link gone silent, rows the database refuses.

The promise under test: a webhook hears 200 only once its row is committed, 503 whenever the
database is merely absent (Evolution re-delivers), and 400 only for data PostgreSQL will never
store (Evolution drops it).  Run with `-s` to see the measured figures.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import trio
import trio_asyncio

from auzap_actors.store.inbox import InboxEntry, InboxRejected, InboxUnavailable, InboxWriter

from .faultdb import DB, FaultPostgres, fault_db_fixture, fault_postgres_fixture  # noqa: F401


@asynccontextmanager
async def running_writer(dsn: str, **options: Any) -> AsyncIterator[InboxWriter]:
    rung: list[set[str]] = []
    writer = InboxWriter(dsn, on_committed=rung.append, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        yield writer
        nursery.cancel_scope.cancel()


def entry(payload: dict[str, Any] | None = None, *, instance: str = "user_faults") -> InboxEntry:
    key = uuid.uuid4().hex
    return InboxEntry(key, instance, "messages.upsert", payload or {"key": key})


async def stored_keys(dsn: str) -> set[str]:
    conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn)
    try:
        rows = await trio_asyncio.aio_as_trio(conn.fetch)("SELECT dedup_key FROM webhook_inbox")
    finally:
        await trio_asyncio.aio_as_trio(conn.close)()
    return {r["dedup_key"] for r in rows}


async def in_thread(fn: Any, *args: Any) -> Any:
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


@dataclass
class Outcome:
    key: str
    issued: float
    finished: float
    result: str  # "stored", "unavailable" or "rejected"
    reason: str = ""


async def submit(writer: InboxWriter, item: InboxEntry, log: list[Outcome]) -> Outcome:
    issued = trio.current_time()
    try:
        await writer.submit(item)
    except InboxUnavailable as exc:
        outcome = Outcome(item.dedup_key, issued, trio.current_time(), "unavailable", str(exc))
    except InboxRejected as exc:
        outcome = Outcome(item.dedup_key, issued, trio.current_time(), "rejected", str(exc))
    else:
        outcome = Outcome(item.dedup_key, issued, trio.current_time(), "stored")
    log.append(outcome)
    return outcome


async def submit_until_stored(writer: InboxWriter, log: list[Outcome], within_s: float) -> Outcome:
    with trio.fail_after(within_s):
        while True:
            outcome = await submit(writer, entry(), log)
            if outcome.result == "stored":
                return outcome
            await trio.sleep(0.05)


# ---- (a) sessions terminated while the writer is idle --------------------------------------------


async def test_backends_terminated_then_submit_succeeds(
    fault_postgres: FaultPostgres, fault_db: str
) -> None:
    async with running_writer(fault_db) as writer:
        assert await writer.submit(entry()) is False
        killed = await in_thread(fault_postgres.terminate_backends, DB)
        assert killed == 1  # the writer's session
        # At once, before the idle check could notice: the batch meets the dead link, the
        # writer reconnects and retries it once; nobody hears 503.
        started = trio.current_time()
        item = entry()
        assert await writer.submit(item) is False
        took = trio.current_time() - started
        assert writer.reconnects == 1
        print(f"\nsubmit on a terminated session: stored in {took * 1000:.0f} ms after 1 reconnect")
    assert item.dedup_key in await stored_keys(fault_db)


async def test_idle_writer_notices_terminated_session(
    fault_postgres: FaultPostgres, fault_db: str
) -> None:
    async with running_writer(fault_db, idle_check_s=0.3) as writer:
        assert await writer.submit(entry()) is False
        await in_thread(fault_postgres.terminate_backends, DB)
        for _ in range(60):  # the idle check runs every 0.3 s
            if writer.reconnects:
                break
            await trio.sleep(0.05)
        assert writer.reconnects == 1, "the idle writer did not notice its dead session"
        assert writer.running
        assert await writer.submit(entry()) is False
        assert writer.reconnects == 1  # already repaired: the webhook did not pay for it


# ---- (b) the server stopped for 4 s while webhooks keep coming -----------------------------------


async def test_server_stopped_four_seconds(fault_postgres: FaultPostgres, fault_db: str) -> None:
    log: list[Outcome] = []
    async with running_writer(fault_db) as writer:
        assert await writer.submit(entry()) is False

        async def keep_submitting() -> None:
            while True:
                await submit(writer, entry(), log)
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_submitting)
            await trio.sleep(0.5)
            down_at = trio.current_time()
            stop_s = await in_thread(fault_postgres.stop)
            await trio.sleep(4.0)
            starting_at = trio.current_time()
            start_s = await in_thread(fault_postgres.start)
            up_at = trio.current_time()
            first = await submit_until_stored(writer, log, within_s=6)
            await trio.sleep(0.5)  # the stream after recovery
            nursery.cancel_scope.cancel()
        outage_s = up_at - down_at
        recovered_s = first.finished - up_at
        print(
            f"\noutage {outage_s:.2f} s (pg_ctl stop {stop_s:.2f} s, start {start_s:.2f} s);"
            f" first stored submit {recovered_s:.2f} s after the server was up;"
            f" {sum(o.result == 'unavailable' for o in log)} submits answered 503,"
            f" {sum(o.result == 'stored' for o in log)} stored; {writer!r}"
        )
        assert not [o for o in log if o.result == "rejected"]
        # While the server is certainly down: a waiting request may reach it while `start`
        # is still returning.
        during = [o for o in log if down_at + stop_s < o.issued and o.finished < starting_at]
        assert during and all(o.result == "unavailable" for o in during)
        # Unavailable means quickly unavailable: nobody waits out the outage.
        assert max(o.finished - o.issued for o in during) < 4.0
        assert recovered_s < 5.0
        assert all(o.result == "stored" for o in log if o.issued >= first.finished)
    stored = await stored_keys(fault_db)
    acknowledged = {o.key for o in log if o.result == "stored"}
    assert acknowledged <= stored  # every 200 is a committed row


# ---- (c) the database turned read-only (25006) ---------------------------------------------------


async def test_read_only_database(fault_postgres: FaultPostgres, fault_db: str) -> None:
    log: list[Outcome] = []
    async with running_writer(fault_db) as writer:
        assert await writer.submit(entry()) is False
        await in_thread(fault_postgres.set_read_only, DB, True)
        with trio.fail_after(10):
            for _ in range(8):
                await submit(writer, entry(), log)
                await trio.sleep(0.1)
        assert [o.result for o in log] == ["unavailable"] * len(log)
        assert any("read-only" in o.reason for o in log), [o.reason for o in log]
        await in_thread(fault_postgres.set_read_only, DB, False)
        writable_at = trio.current_time()
        first = await submit_until_stored(writer, log, within_s=6)
        print(
            f"\nread-only: {sum(o.result == 'unavailable' for o in log)} submits answered 503;"
            f" first stored {first.finished - writable_at:.2f} s after writes were allowed"
        )
        assert not [o for o in log if o.result == "rejected"]
    stored = await stored_keys(fault_db)
    assert not {o.key for o in log if o.result == "unavailable"} & stored


# ---- (d) rows the database refuses, in a batch with good ones ------------------------------------


async def test_refused_rows_do_not_fail_their_batch(fault_db: str) -> None:
    good = [entry() for _ in range(3)]
    nan = entry({"reading": float("nan")})  # json.dumps writes NaN; jsonb refuses it: 22P02
    # An instance name longer than a btree entry may be (the pending-rows index): 54000.
    huge = entry(instance="user_" + "".join(uuid.uuid4().hex for _ in range(200)))
    again = InboxEntry(good[0].dedup_key, good[0].instance_name, "messages.upsert", {"x": 1})
    nan_again = InboxEntry(nan.dedup_key, nan.instance_name, nan.event, nan.payload)
    batch = [good[0], nan, good[1], huge, good[2], again, nan_again]
    log: list[Outcome] = []
    # A long linger gathers the whole batch into one statement.
    async with running_writer(fault_db, linger_s=0.5) as writer:
        async with trio.open_nursery() as nursery:
            for item in batch:
                nursery.start_soon(submit, writer, item, log)
        assert writer.batches == 1
        assert writer.rejected == 2
        by_key = {o.key: o.result for o in log}
        assert by_key[nan.dedup_key] == "rejected"
        assert by_key[huge.dedup_key] == "rejected"
        assert all(by_key[g.dedup_key] == "stored" for g in good)
        assert [o.result for o in log if o.key == nan.dedup_key] == ["rejected"] * 2
        reasons = [o.reason for o in log if o.result == "rejected"]
        print(f"\nrefused rows: {reasons}")
        # The connection survived the refusals: no reconnect, and the next batch is fine.
        assert writer.reconnects == 0
        assert await writer.submit(entry()) is False
    assert await stored_keys(fault_db) >= {g.dedup_key for g in good}
    assert not {nan.dedup_key, huge.dedup_key} & await stored_keys(fault_db)


# ---- (e) a TCP link that goes silent ---------------------------------------------------------


class SilentLink:
    """A TCP relay to the server that can go silent: while frozen it keeps every socket open
    and moves no byte, and new connections are accepted but never reach the server, like a
    peer gone without a RST (a dead VM, a network partition)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._thawed = trio.Event()
        self._thawed.set()

    def freeze(self) -> None:
        self._thawed = trio.Event()

    def thaw(self) -> None:
        self._thawed.set()

    async def serve(self, *, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            await self._thawed.wait()
            try:
                server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            except OSError:
                return
            async with server, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, nursery.cancel_scope)
                nursery.start_soon(self._pump, server, client, nursery.cancel_scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while True:
                await self._thawed.wait()
                data = await source.receive_some(65536)
                if not data:
                    break
                await self._thawed.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()  # one side gone: close both


async def test_silent_link_is_cut_by_the_statement_timeout(
    fault_postgres: FaultPostgres, fault_db: str
) -> None:
    link = SilentLink(fault_postgres.port)
    log: list[Outcome] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(link.serve)
        dsn = f"postgresql://postgres@127.0.0.1:{port}/{DB}"
        options = {"statement_timeout_s": 1.0, "connect_timeout_s": 1.0}
        async with running_writer(dsn, **options) as writer:
            assert await writer.submit(entry()) is False
            link.freeze()
            outcome = await submit(writer, entry(), log)
            assert outcome.result == "unavailable"
            waited = outcome.finished - outcome.issued
            # Statement (1 s + 1 s margin), then one reconnect (1 s): not the kernel's minutes.
            assert waited < 4.5
            link.thaw()
            thawed_at = trio.current_time()
            first = await submit_until_stored(writer, log, within_s=8)
            print(
                f"\nsilent link: a submit answered 503 after {waited:.2f} s;"
                f" first stored {first.finished - thawed_at:.2f} s after the link came back"
            )
        nursery.cancel_scope.cancel()
    assert not [o for o in log if o.result == "rejected"]
