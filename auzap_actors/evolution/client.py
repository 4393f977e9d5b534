"""Async HTTP client for Evolution API v2 (facts §1-§2).

Every call goes through :meth:`EvolutionClient._request`, the single choke point
where retries (stamina, :class:`RetryPolicy`) and the circuit breaker of this base URL
(:class:`CircuitBreaker`) apply. The API key travels in the ``apikey`` header only and
is never logged or put into an exception.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import trio

from ..observability.journal import EvolutionCall
from .answers import (
    decode_answer,
    parse_connect,
    parse_instance_row,
    parse_qr,
    parse_webhook,
    webhook_body,
)
from .breaker import BreakerConfig, CircuitBreaker
from .errors import (
    EvolutionError,
    EvolutionServerError,
    EvolutionUnavailable,
    outcome_of,
)
from .lanes import Lanes, NoLaneFree
from .retry import RetryPolicy, retry_after, should_retry
from .types import ConnectResult, CreatedInstance, InstanceInfo, WebhookConfig

__all__ = [
    "BreakerConfig",
    "CallObserver",
    "CircuitBreaker",
    "EvolutionClient",
    "RetryPolicy",
    "parse_connect",
    "parse_instance_row",
    "parse_qr",
    "parse_webhook",
    "webhook_body",
]

# Failures raised before a single byte of the request left: safe to repeat even for
# calls that must not happen twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

log = logging.getLogger(__name__)

INTEGRATION = "WHATSAPP-BAILEYS"
# Evolution requests in flight at once per client, each on its own lane (one kept-alive
# connection, lanes.py); 32 in flight carry ~600 calls/s at 50 ms per call.
MAX_IN_FLIGHT = 32

# Told of every call once it ended (its retries included): the instance it was about (None for
# calls about no instance) and what happened.  The service's metrics and per-instance journal.
CallObserver = Callable[[str | None, EvolutionCall], None]


def _seg(name: str) -> str:
    # Instance names end up in the URL path; quote everything so a stray "/" or "?"
    # cannot address another route.
    return quote(name, safe="")


class EvolutionClient:
    """One Evolution server, authenticated with one API key (global or instance).

    ``retry`` defaults to ``RetryPolicy()``; ``breaker`` to a fresh breaker for
    ``base_url``. Clients that talk to the same server with different keys should
    share one breaker (pass it in): the breaker judges the server, not the key.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        observer: CallObserver | None = None,
        queue_wait_s: float = 120.0,
        lanes: int = MAX_IN_FLIGHT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.observer = observer
        self._timeout = timeout
        self.retry = RetryPolicy() if retry is None else retry
        self.breaker = (
            CircuitBreaker(self.base_url, BreakerConfig()) if breaker is None else breaker
        )
        self.queue_wait_s = queue_wait_s
        headers = {"apikey": api_key}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        http_timeout = httpx.Timeout(timeout, connect=connect_timeout)

        def lane(tls: ssl.SSLContext) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=self.base_url,
                headers=headers,
                timeout=http_timeout,
                limits=limits,
                transport=transport,
                verify=tls,
            )

        # Requests wait for a lane (one kept-alive connection each) in a trio limiter, not in
        # httpcore's pool (see lanes.py: its per-request scans were most of the CPU of the
        # health checks).
        self._lanes = Lanes(lanes, lane)

    def __repr__(self) -> str:
        return f"EvolutionClient({self.base_url!r})"

    async def aclose(self) -> None:
        await self._lanes.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the single choke point ------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool,
        instance: str | None = None,
    ) -> Any:
        """`_with_retries`, told to the observer: method, the path's template (the instance's
        name replaced by `{instance}`: bounded labels, and no name in metrics), outcome,
        status, duration and attempts.  Never the key nor the body."""
        if self.observer is None:
            return await self._with_retries(method, path, json, params, idempotent, [0, 0])
        started, tally = trio.current_time(), [0, 0]
        outcome, status = "cancelled", None
        try:
            body = await self._with_retries(method, path, json, params, idempotent, tally)
            outcome, status = "ok", tally[1]
            return body
        except EvolutionError as exc:
            outcome, status = outcome_of(exc), exc.status
            raise
        except Exception:
            outcome = "bug"
            raise
        finally:
            template = path.replace(_seg(instance), "{instance}") if instance else path
            call = EvolutionCall(
                time.time(),
                method,
                template,
                outcome,
                status,
                trio.current_time() - started,
                tally[0],
            )
            self.observer(instance, call)

    async def _with_retries(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, str] | None,
        idempotent: bool,
        tally: list[int],
    ) -> Any:
        """Send a request, with retries, and decode Evolution's answer (`tally` gets the
        attempts made and the last answer's HTTP status).

        ``idempotent`` says whether the call may be repeated safely; see
        :func:`~auzap_actors.evolution.retry.should_retry` for what is retried.
        Raises the last attempt's :class:`EvolutionError`;
        :class:`EvolutionCircuitOpen` (nothing sent) while the breaker is open.
        Cancellation propagates at once, between attempts too; a cancelled
        half-open probe frees the breaker's probe slot.

        The first attempt is sent outside stamina: building its retry context costs more
        CPU than a health check's whole request (`bench health`), and most calls need one
        attempt.  A first failure worth retrying enters the retry loop, which replays it as
        its own first attempt, so the waits and the attempts are stamina's as before.
        """
        tally[0] = 1
        probe = self.breaker.allow(method=method, path=path)
        try:
            body, tally[1] = await self._send(method, path, json=json, params=params)
        except EvolutionUnavailable as exc:
            if probe or self.retry.attempts < 2 or not should_retry(exc, idempotent=idempotent):
                self.breaker.record_failure()
                raise
            first: EvolutionError = exc
        except EvolutionError:
            self.breaker.record_success()
            raise
        except BaseException:
            if probe:
                self.breaker.record_abandoned()
            raise
        else:
            self.breaker.record_success()
            return body

        async def send() -> tuple[Any, int]:
            return await self._send(method, path, json=json, params=params)

        return await retry_after(
            first, send, self.retry, self.breaker, method, path, idempotent, tally, log
        )

    async def _send(
        self, method: str, path: str, *, json: Any, params: dict[str, str] | None
    ) -> tuple[Any, int]:
        """One attempt: Evolution's decoded answer and its HTTP status."""
        log.debug("evolution %s %s", method, path)
        try:
            response = await self._lanes.request(
                method,
                path,
                json=json,
                params=params,
                wait_s=self.queue_wait_s,
                timeout_s=self._timeout,
            )
        except NoLaneFree as exc:
            raise EvolutionUnavailable(
                [], status=None, method=method, path=path, reason=str(exc), request_sent=False
            ) from exc
        except trio.TooSlowError as exc:
            raise EvolutionUnavailable(
                [],
                status=None,
                method=method,
                path=path,
                reason=f"timed out after {self._timeout}s",
            ) from exc
        except httpx.TransportError as exc:
            raise EvolutionUnavailable(
                [],
                status=None,
                method=method,
                path=path,
                reason=f"{type(exc).__name__}: {exc}",
                request_sent=not isinstance(exc, _NOT_SENT),
            ) from exc
        return decode_answer(method, path, response), response.status_code

    @staticmethod
    def _expect_dict(body: Any, method: str, path: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise EvolutionServerError(
                [], status=200, method=method, path=path, reason="unexpected answer shape"
            )
        return body

    # -- instances -------------------------------------------------------------

    async def create_instance(
        self,
        name: str,
        *,
        webhook: WebhookConfig,
        token: str | None = None,
        qrcode: bool = False,
    ) -> CreatedInstance:
        path = "/instance/create"
        payload: dict[str, Any] = {
            "instanceName": name,
            "integration": INTEGRATION,
            "qrcode": qrcode,
            "webhook": webhook_body(webhook),
        }
        if token is not None:
            payload["token"] = token
        body = self._expect_dict(
            await self._request("POST", path, json=payload, idempotent=False, instance=name),
            "POST",
            path,
        )
        instance = body.get("instance")
        if not isinstance(instance, dict) or not isinstance(body.get("hash"), str):
            raise EvolutionServerError(
                [], status=201, method="POST", path=path, reason="create answer lacks instance/hash"
            )
        return CreatedInstance(
            instance_name=str(instance.get("instanceName", name)),
            instance_id=str(instance.get("instanceId", "")),
            status=str(instance.get("status", "close")),
            token=body["hash"],
        )

    async def connect(self, name: str, *, number: str | None = None) -> ConnectResult:
        params = {"number": number} if number is not None else None
        body = await self._request(
            "GET", f"/instance/connect/{_seg(name)}", params=params, idempotent=True, instance=name
        )
        return parse_connect(body)

    async def connection_state(self, name: str) -> str:
        path = f"/instance/connectionState/{_seg(name)}"
        body = await self._request("GET", path, idempotent=True, instance=name)
        instance = body.get("instance") if isinstance(body, dict) else None
        state = instance.get("state") if isinstance(instance, dict) else None
        # state is missing when the instance is in the DB but not loaded (§2.4).
        return state if isinstance(state, str) else "unknown"

    async def fetch_instances(self, *, name: str | None = None) -> list[InstanceInfo]:
        path = "/instance/fetchInstances"
        params = {"instanceName": name} if name is not None else None
        body = await self._request("GET", path, params=params, idempotent=True, instance=name)
        if not isinstance(body, list):
            raise EvolutionServerError(
                [], status=200, method="GET", path=path, reason="expected a JSON array"
            )
        return [parse_instance_row(row) for row in body if isinstance(row, dict)]

    async def restart(self, name: str) -> ConnectResult:
        # POST since v2.0 (the docs still say PUT, §2.6).
        path = f"/instance/restart/{_seg(name)}"
        body = await self._request("POST", path, idempotent=True, instance=name)
        return parse_connect(body)

    async def logout(self, name: str) -> None:
        path = f"/instance/logout/{_seg(name)}"
        await self._request("DELETE", path, idempotent=False, instance=name)

    async def delete_instance(self, name: str) -> None:
        path = f"/instance/delete/{_seg(name)}"
        await self._request("DELETE", path, idempotent=False, instance=name)

    # -- webhooks --------------------------------------------------------------

    async def set_webhook(self, name: str, config: WebhookConfig) -> WebhookConfig:
        path = f"/webhook/set/{_seg(name)}"
        body = await self._request(
            "POST", path, json={"webhook": webhook_body(config)}, idempotent=True, instance=name
        )
        return parse_webhook(self._expect_dict(body, "POST", path))

    async def find_webhook(self, name: str) -> WebhookConfig | None:
        path = f"/webhook/find/{_seg(name)}"
        body = await self._request("GET", path, idempotent=True, instance=name)
        return parse_webhook(body) if isinstance(body, dict) else None

    # -- messages --------------------------------------------------------------

    async def send_text(self, name: str, number: str, text: str) -> dict[str, Any]:
        path = f"/message/sendText/{_seg(name)}"
        body = await self._request(
            "POST", path, json={"number": number, "text": text}, idempotent=False, instance=name
        )
        return self._expect_dict(body, "POST", path)

    async def send_presence(
        self, name: str, number: str, presence: str = "composing", delay_ms: int = 0
    ) -> None:
        """A per-chat presence ("composing": typing); the real server holds the answer for
        ``delay_ms``.  Repeating it is harmless, so it is retried like a read."""
        path = f"/chat/sendPresence/{_seg(name)}"
        payload = {"number": number, "presence": presence, "delay": delay_ms}
        await self._request("POST", path, json=payload, idempotent=True)
