"""Retries and the circuit breaker of the Evolution client, against the simulator over
real HTTP on loopback, with tiny real delays instead of a patched clock."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from auzap_actors.evolution import (
    EvolutionBadRequest,
    EvolutionClient,
    EvolutionNotFound,
    EvolutionServerError,
    EvolutionUnauthorized,
    EvolutionUnavailable,
    WebhookConfig,
)
from auzap_actors.evolution.breaker import BreakerConfig, CircuitBreaker
from auzap_actors.evolution.errors import EvolutionCircuitOpen
from auzap_actors.evolution.retry import RetryPolicy, should_retry
from auzap_actors.evolution.simulator import SimulatorConfig, serve_simulator

API_KEY = "retry-test-key"
FAST = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05)
BREAKER = BreakerConfig(failures=5, window_s=60, reset_s=0.3)
TOLERANT = BreakerConfig(failures=1000, window_s=60, reset_s=0.3)  # never opens here
STATE = "GET /instance/connectionState/{instance}"
SEND = "POST /message/sendText/{instance}"
CREATE = "POST /instance/create"


class CountingTransport(httpx.AsyncBaseTransport):
    """The real transport, counting how many requests the client tried to send."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def sim_url(nursery: trio.Nursery) -> str:
    # One webhook try, to the simulator's own unrouted /_sim path (404, not counted):
    # these tests look at REST traffic only.
    config = SimulatorConfig(api_key=API_KEY, webhook_retry_attempts=1)
    url: str = await nursery.start(serve_simulator, config)
    return url


@asynccontextmanager
async def evolution(
    url: str,
    *,
    retry: RetryPolicy = FAST,
    breaker: BreakerConfig = BREAKER,
    **kw: Any,
) -> AsyncIterator[EvolutionClient]:
    async with EvolutionClient(
        url, API_KEY, retry=retry, breaker=CircuitBreaker(url, breaker), **kw
    ) as evo:
        yield evo


async def faults(control: httpx.AsyncClient, mode: str, **kw: Any) -> None:
    answer = await control.post("/_sim/faults", json={"mode": mode, **kw})
    assert answer.status_code == 200


async def counts(control: httpx.AsyncClient) -> dict[str, int]:
    by_route: dict[str, int] = (await control.get("/_sim/requests")).json()["by_route"]
    return by_route


async def create(evo: EvolutionClient, name: str) -> None:
    await evo.create_instance(name, webhook=WebhookConfig(f"{evo.base_url}/_sim/sink", ()))


def closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- what is retried ---------------------------------------------------------------------


async def test_flaky_idempotent_calls_all_succeed(
    sim_url: str, control: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # 12 attempts: with 3, one call in 37 would still fail 3 times in a row at 30 %
    # (0.3**3), so 50 calls would fail most runs; 0.3**12 * 50 is about 3e-5.
    # The breaker keeps its default: it judges calls, and a call saved by a retry proves
    # Evolution reachable, so a flaky server never trips it.
    retry = RetryPolicy(attempts=12, initial_s=0.01, max_s=0.05)
    async with evolution(sim_url, retry=retry) as evo:
        await create(evo, "flaky")
        await faults(control, "flaky", error_rate=0.3)
        caplog.set_level(logging.WARNING)
        states = [await evo.connection_state("flaky") for _ in range(50)]
        assert states == ["close"] * 50
        assert (await counts(control))[STATE] > 50
        assert evo.breaker.snapshot()["status"] == "closed"
        assert evo.breaker.snapshot()["failures_in_window"] == 0
    retries = [r for r in caplog.records if r.name == "auzap_actors.evolution.client"]
    assert retries and all(r.levelno == logging.WARNING for r in retries)
    assert "attempt 2 of 12" in retries[0].getMessage()
    assert all(API_KEY not in str(vars(r)) for r in caplog.records)


async def test_client_errors_are_sent_once(sim_url: str, control: httpx.AsyncClient) -> None:
    async with evolution(sim_url) as evo:
        await create(evo, "once")
        with pytest.raises(EvolutionNotFound):
            await evo.connection_state("ghost")
        with pytest.raises(EvolutionBadRequest):  # set_webhook is idempotent
            await evo.set_webhook("once", WebhookConfig("http://x.invalid/h", ("NOPE",)))
        async with EvolutionClient(sim_url, "wrong-key", retry=FAST) as bad:
            with pytest.raises(EvolutionUnauthorized):
                await bad.connection_state("once")
        assert evo.breaker.snapshot()["failures_in_window"] == 0  # the server answered
    assert await counts(control) == {
        CREATE: 1,
        STATE: 2,  # ghost (404) and the wrong key (401)
        "POST /webhook/set/{instance}": 1,
    }


async def test_500_is_not_retried_nor_a_breaker_failure(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    async with evolution(sim_url) as evo:
        await create(evo, "err")
        await faults(control, "error")
        for _ in range(BREAKER.failures + 1):
            with pytest.raises(EvolutionServerError) as error:
                await evo.connection_state("err")
            assert error.value.status == 500
        assert evo.breaker.snapshot()["status"] == "closed"
        assert evo.breaker.snapshot()["failures_in_window"] == 0
    assert (await counts(control))[STATE] == BREAKER.failures + 1


async def test_non_idempotent_calls_are_not_repeated_once_sent(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    async with evolution(sim_url, breaker=TOLERANT) as evo:
        await create(evo, "busy")
        await faults(control, "down")  # 503 answers: "not processed", safe to send again
        with pytest.raises(EvolutionUnavailable) as send:
            await evo.send_text("busy", "5511911112222", "hi")
        assert send.value.status == 503 and send.value.request_sent
        with pytest.raises(EvolutionUnavailable):
            await evo.create_instance("other", webhook=WebhookConfig("http://x.invalid/h", ()))
        with pytest.raises(EvolutionUnavailable):  # idempotent: all attempts used
            await evo.connection_state("busy")
        assert await counts(control) == {
            CREATE: 1 + FAST.attempts,
            SEND: FAST.attempts,
            STATE: FAST.attempts,
        }

        # A read timeout: the server got the request, so send_text is not repeated.
        await faults(control, "slow", latency_ms=300)
    async with evolution(sim_url, breaker=TOLERANT, timeout=0.1) as impatient:
        with pytest.raises(EvolutionUnavailable, match="timed out"):
            await impatient.send_text("busy", "5511911112222", "hi")
        with pytest.raises(EvolutionUnavailable, match="timed out"):
            await impatient.connection_state("busy")
    assert await counts(control) == {
        CREATE: 1 + FAST.attempts,
        SEND: FAST.attempts + 1,
        STATE: 2 * FAST.attempts,
    }


def test_gateway_errors_that_may_have_been_processed_are_not_repeated() -> None:
    def unavailable(status: int | None, sent: bool = True) -> EvolutionUnavailable:
        return EvolutionUnavailable([], status=status, method="POST", path="/x", request_sent=sent)

    assert should_retry(unavailable(503), idempotent=False)
    assert not should_retry(unavailable(502), idempotent=False)
    assert not should_retry(unavailable(504), idempotent=False)
    assert not should_retry(unavailable(None), idempotent=False)  # read timeout, reset
    assert should_retry(unavailable(None, sent=False), idempotent=False)
    assert all(should_retry(unavailable(s), idempotent=True) for s in (502, 503, 504, None))


async def test_non_idempotent_calls_are_retried_when_never_sent() -> None:
    transport = CountingTransport()
    url = f"http://127.0.0.1:{closed_port()}"
    async with evolution(url, breaker=TOLERANT, transport=transport) as evo:
        with pytest.raises(EvolutionUnavailable) as refused:
            await evo.send_text("nobody", "5511911112222", "hi")
        assert refused.value.status is None and not refused.value.request_sent
        assert "ConnectError" in str(refused.value)
        assert transport.calls == FAST.attempts
        with pytest.raises(EvolutionUnavailable):
            await evo.create_instance("nobody", webhook=WebhookConfig("http://x.invalid/h", ()))
        assert transport.calls == 2 * FAST.attempts
        assert evo.breaker.snapshot()["failures_in_window"] == 2  # calls, not attempts


# -- the breaker -----------------------------------------------------------------------


OPENED_AFTER = BREAKER.failures * FAST.attempts  # requests sent until the breaker opens


async def open_breaker(evo: EvolutionClient, control: httpx.AsyncClient) -> None:
    """Mode down: each call uses its 3 attempts and counts one failure; the 5th failed call
    opens the breaker, and the next call is refused without a request."""
    await faults(control, "down")
    for n in range(1, BREAKER.failures + 1):
        with pytest.raises(EvolutionUnavailable) as failed:
            await evo.connection_state("cb")
        assert type(failed.value) is EvolutionUnavailable and failed.value.status == 503
        if n < BREAKER.failures:
            assert repr(evo.breaker).endswith(f" closed {n}/5 failures>")
    assert evo.breaker.state.status == "open"
    with pytest.raises(EvolutionCircuitOpen):
        await evo.connection_state("cb")
    assert (await counts(control))[STATE] == OPENED_AFTER


async def test_open_breaker_fails_fast_then_a_probe_closes_it(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    async with evolution(sim_url) as evo:
        await create(evo, "cb")
        await open_breaker(evo, control)
        for _ in range(5):
            start = trio.current_time()
            with pytest.raises(EvolutionCircuitOpen) as refused:
                await evo.connection_state("cb")
            assert trio.current_time() - start < 0.05  # no waiting, no request
        assert 0 < refused.value.retry_after_s <= BREAKER.reset_s
        assert f"Evolution API at {sim_url} is unavailable (circuit open; next probe in" in str(
            refused.value
        )
        await faults(control, "none")
        with pytest.raises(EvolutionCircuitOpen):  # healthy again, but not probed yet
            await evo.connection_state("cb")
        assert (await counts(control))[STATE] == OPENED_AFTER

        await trio.sleep(evo.breaker.snapshot()["retry_after_s"] + 0.01)
        await faults(control, "slow", latency_ms=300)
        async with trio.open_nursery() as nursery:
            probe: list[str] = []

            async def probe_call() -> None:
                probe.append(await evo.connection_state("cb"))

            nursery.start_soon(probe_call)
            await trio.sleep(0.05)
            assert repr(evo.breaker).endswith(" half_open, probe in flight>")
            with pytest.raises(EvolutionCircuitOpen, match="a probe request is in flight"):
                await evo.connection_state("cb")
        assert probe == ["close"]
        assert evo.breaker.snapshot() == {
            "status": "closed",
            "failures_in_window": 0,
            "opened_at": None,
            "retry_after_s": 0.0,
            "opened_count": 1,
        }
        await faults(control, "none")
        for _ in range(3):
            assert await evo.connection_state("cb") == "close"
    assert (await counts(control))[STATE] == OPENED_AFTER + 1 + 3


async def test_failed_probe_reopens_and_cancelled_probe_frees_the_slot(
    sim_url: str, control: httpx.AsyncClient
) -> None:
    async with evolution(sim_url) as evo:
        await create(evo, "cb")
        await open_breaker(evo, control)
        first_opened_at = evo.breaker.state.opened_at
        assert first_opened_at is not None
        await trio.sleep(BREAKER.reset_s + 0.01)
        # The probe is one request (not retried); it gets a 503: reopened at once.
        with pytest.raises(EvolutionUnavailable) as probe_failed:
            await evo.connection_state("cb")
        assert type(probe_failed.value) is EvolutionUnavailable
        snapshot = evo.breaker.snapshot()
        assert (snapshot["status"], snapshot["opened_count"]) == ("open", 2)
        assert snapshot["opened_at"] >= first_opened_at + BREAKER.reset_s  # a new open period
        assert (await counts(control))[STATE] == OPENED_AFTER + 1
        with pytest.raises(EvolutionCircuitOpen):
            await evo.connection_state("cb")
        assert (await counts(control))[STATE] == OPENED_AFTER + 1

        # A probe cancelled by its caller must not leave the breaker half-open forever.
        await trio.sleep(BREAKER.reset_s + 0.01)
        await faults(control, "slow", latency_ms=2000)
        with trio.move_on_after(0.1):
            await evo.connection_state("cb")
        assert repr(evo.breaker).endswith(" half_open>")
        await faults(control, "none")
        assert await evo.connection_state("cb") == "close"
        assert evo.breaker.state.status == "closed"
    assert (await counts(control))[STATE] == OPENED_AFTER + 1 + 2
