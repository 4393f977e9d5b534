"""An OpenAI-compatible chat-completions client (OpenAI, vLLM, Ollama, LiteLLM and the like):
``POST {base_url}/chat/completions`` with ``{"model", "messages"}``, the reply read from
``choices[0].message.content``.

Each attempt has a timeout; transport errors, timeouts, 429 and 5xx are retried (stamina,
``attempts`` in all); the provider has its own circuit breaker (the pure one of
`core.breaker`), which judges calls, not attempts, and while open refuses at once.  Any other
answer (400, 401, 404, a body without a reply) is final.  The API key never reaches a log, an
error message or /admin/tree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import stamina
import trio

from ..core import breaker as core
from ..core.breaker import BreakerConfig, BreakerState
from .responder import SYSTEM_PREAMBLE, ReplyRequest, ResponderError

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 4000  # WhatsApp takes more; a business reply this long is a runaway model
MAX_ANSWER_BYTES = 1024 * 1024


class _Unavailable(ResponderError):
    """The provider did not answer usefully now (worth a retry, counted by the breaker)."""


class ProviderBreaker:
    """The stateful shell of `core.breaker` for one AI provider (synchronous: no task can run
    between reading and replacing the state)."""

    def __init__(self, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self._clock = clock
        self.state = BreakerState()

    def allow(self) -> bool:
        """False while open; True when the call may go (the half-open probe included)."""
        self.state, allowed = core.allow(self.state, self.config, self._clock())
        return allowed

    def success(self) -> None:
        self.state = core.record_success(self.state, self.config, self._clock())

    def failure(self) -> None:
        before = self.state.status
        self.state = core.record_failure(self.state, self.config, self._clock())
        if before != "open" and self.state.status == "open":
            log.warning("AI provider circuit opened; next probe in %.1f s", self.config.reset_s)

    def abandoned(self) -> None:
        self.state = core.record_abandoned(self.state, self.config, self._clock())

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "status": self.state.status,
            "failures_in_window": core.failures_in_window(self.state, self.config, now),
            "retry_after_s": round(core.retry_after(self.state, self.config, now), 3),
            "opened_count": self.state.opened_count,
        }


def _public(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=""))


class OpenAIResponder:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout_s: float = 20.0,
        attempts: int = 2,
        retry_initial_s: float = 0.5,
        max_tokens: int = 400,
        breaker: BreakerConfig | None = None,
        clock: Callable[[], float] = trio.current_time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.retry_initial_s = retry_initial_s
        self.max_tokens = max_tokens
        self.breaker = ProviderBreaker(breaker or BreakerConfig(), clock)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(timeout_s), transport=transport
        )
        self.calls = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"<OpenAIResponder {_public(self.base_url)} model={self.model}>"

    def body(self, request: ReplyRequest) -> dict[str, Any]:
        system = SYSTEM_PREAMBLE
        if request.prompt.strip():
            system += "\n\n" + request.prompt.strip()
        if request.contact_name:
            system += f"\n\nThe customer's WhatsApp name is {request.contact_name}."
        messages = [{"role": "system", "content": system}]
        messages += [{"role": t.role, "content": t.text} for t in request.conversation]
        return {"model": self.model, "messages": messages, "max_tokens": self.max_tokens}

    async def reply(self, request: ReplyRequest) -> str:
        self.calls += 1
        if not self.breaker.allow():
            self.failures += 1
            raise ResponderError("the AI provider's circuit is open (too many recent failures)")
        body = self.body(request)
        try:
            text = await self._with_retries(body)
        except _Unavailable:
            self.failures += 1
            self.breaker.failure()
            raise
        except ResponderError:
            # A refusal came from a live server: it is up, the request was wrong.
            self.failures += 1
            self.breaker.success()
            raise
        except BaseException:
            self.breaker.abandoned()
            raise
        self.breaker.success()
        return text

    async def _with_retries(self, body: dict[str, Any]) -> str:
        async for attempt in stamina.retry_context(
            on=_Unavailable,
            attempts=self.attempts,
            timeout=None,
            wait_initial=self.retry_initial_s,
            wait_max=5.0,
        ):
            with attempt:
                return await self._once(body)
        raise AssertionError("unreachable: stamina raises after the last attempt")

    async def _once(self, body: dict[str, Any]) -> str:
        url = f"{self.base_url}/chat/completions"
        try:
            with trio.fail_after(self.timeout_s):
                response = await self._http.post(url, json=body)
        except trio.TooSlowError:
            raise _Unavailable(
                f"the AI provider did not answer within {self.timeout_s:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise _Unavailable(f"the AI provider is unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Unavailable(f"the AI provider answered {status}")
        if status >= 400:
            raise ResponderError(f"the AI provider refused the request ({status})")
        if len(response.content) > MAX_ANSWER_BYTES:
            raise ResponderError("the AI provider's answer is too large")
        try:
            answer = response.json()
            content = answer["choices"][0]["message"]["content"]
        except (ValueError, RecursionError, KeyError, IndexError, TypeError):
            # RecursionError: JSON nested deeper than Python's parser follows.
            raise ResponderError("the AI provider's answer has no reply in it") from None
        if not isinstance(content, str) or not content.strip():
            raise ResponderError("the AI provider answered an empty reply")
        return content.strip()[:MAX_REPLY_CHARS]

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_url": _public(self.base_url),
            "model": self.model,
            "calls": self.calls,
            "failures": self.failures,
            "breaker": self.breaker.snapshot(),
        }

    async def aclose(self) -> None:
        await self._http.aclose()
