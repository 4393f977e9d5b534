"""Webhook emitter of the simulator: envelopes, filtering, JWT header, retries.

Mirrors Evolution's ``webhook.controller.ts#emit`` (facts §3):

* the envelope is built when the event is emitted, from the config stored at that
  moment;
* first attempts of one instance's events go out one at a time in emit order (one
  worker per instance), while retries run as their own tasks, so a retried event can
  arrive after later ones, as with the real server;
* emitting never blocks: HTTP handlers only enqueue.
"""

from __future__ import annotations

import json
import logging
import random
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import trio

from ...core.events import event_key, event_slug
from .model import Instance, SimulatorConfig, now_iso
from .tasks import Spawner

log = logging.getLogger(__name__)

NON_RETRYABLE = frozenset({400, 401, 403, 404, 422})
JITTER = 0.2  # WEBHOOK_RETRY_JITTER_FACTOR
USER_AGENT = "axios/1.7.9"  # what 2.3.x sends (axios default headers)


@dataclass(frozen=True, slots=True)
class Delivery:
    instance: str
    event: str
    url: str
    headers: dict[str, str]
    body: bytes
    copies: int  # 1 + the injected duplicates


def should_deliver(events: list[str], event: str) -> bool:
    """Evolution's filter: the event's key must be in the stored list. ``groups.update``
    maps to GROUPS_UPDATE, which the allowed list spells GROUP_UPDATE, so it never
    matches (the real typo is kept on purpose)."""
    return event_key(event) in events


def webhook_jwt(key: str, now: float | None = None) -> str:
    iat = int(time.time() if now is None else now)
    payload = {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}
    with warnings.catch_warnings():
        # Evolution signs with whatever key was configured; PyJWT's short-key warning
        # would only add noise to every delivery.
        warnings.simplefilter("ignore")
        return jwt.encode(payload, key, algorithm="HS256")


class WebhookEmitter:
    def __init__(
        self,
        config: SimulatorConfig,
        *,
        duplicates: Callable[[], int],
        server_url: Callable[[], str],
    ) -> None:
        self._config = config
        self._duplicates = duplicates
        self._server_url = server_url
        self._spawner = Spawner("webhook emitter")
        self._http: httpx.AsyncClient | None = None
        self._queues: dict[str, trio.MemorySendChannel[Delivery]] = {}
        # Recent attempts, for /_sim debugging: {instance, event, url, attempt, result, at}.
        self.log: deque[dict[str, Any]] = deque(maxlen=500)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        timeout = httpx.Timeout(self._config.webhook_timeout_s)
        async with httpx.AsyncClient(timeout=timeout) as http, trio.open_nursery() as nursery:
            self._http = http
            self._spawner.bind(nursery)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._spawner.bind(None)
                self._spawner.cancel_all()
                self._queues.clear()
                self._http = None

    # -- enqueueing ------------------------------------------------------------

    def emit(self, inst: Instance, event: str, data: Any) -> bool:
        """Queue ``event`` for ``inst``'s webhook; False when the config filters it out."""
        hook = inst.webhook
        if hook is None or not hook.enabled or not should_deliver(hook.events, event):
            return False
        if not hook.url.startswith(("http://", "https://")):
            return False  # checked at send time by the real server too
        envelope: dict[str, Any] = {
            "event": event,
            "instance": inst.name,
            "data": data,
            "destination": hook.url,
            "date_time": now_iso(),
        }
        if inst.sender is not None:
            envelope["sender"] = inst.sender
        envelope["server_url"] = self._server_url()
        envelope["apikey"] = None  # AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=false
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        custom = dict(hook.headers)
        jwt_key = custom.pop("jwt_key", None)
        headers.update(custom)
        if jwt_key:
            headers["authorization"] = f"Bearer {webhook_jwt(jwt_key)}"
        url = f"{hook.url}/{event_slug(event)}" if hook.by_events else hook.url
        delivery = Delivery(
            instance=inst.name,
            event=event,
            url=url,
            headers=headers,
            body=json.dumps(envelope, ensure_ascii=False).encode(),
            copies=1 + max(0, self._duplicates()),
        )
        self._queue_for(inst.name).send_nowait(delivery)
        return True

    def _queue_for(self, name: str) -> trio.MemorySendChannel[Delivery]:
        queue = self._queues.get(name)
        if queue is None:
            send, receive = trio.open_memory_channel[Delivery](float("inf"))
            self._spawner.spawn(self._worker, receive)
            self._queues[name] = queue = send
        return queue

    def close_instance(self, name: str) -> None:
        """The instance is gone: its worker drains what is queued, then exits."""
        queue = self._queues.pop(name, None)
        if queue is not None:
            queue.close()

    def reset(self) -> None:
        """Drop everything queued or being retried (``/_sim/reset``)."""
        self._spawner.cancel_all()
        self._queues.clear()
        self.log.clear()

    # -- delivery ----------------------------------------------------------------

    async def _worker(self, receive: trio.MemoryReceiveChannel[Delivery]) -> None:
        async with receive:
            async for delivery in receive:
                for _ in range(delivery.copies):
                    result = await self._attempt(delivery, 1)
                    if result == "retry" and self._config.webhook_retry_attempts > 1:
                        self._spawner.spawn(self._retry, delivery)

    async def _retry(self, delivery: Delivery) -> None:
        cfg = self._config
        for attempt in range(2, cfg.webhook_retry_attempts + 1):
            await trio.sleep(self.retry_delay(attempt - 1))
            if await self._attempt(delivery, attempt) != "retry":
                return
        log.warning(
            "webhook %s for %s dropped after %d attempts",
            delivery.event,
            delivery.instance,
            cfg.webhook_retry_attempts,
        )

    def retry_delay(self, failed_attempt: int) -> float:
        """initial x 2^(n-1), capped, +-20 % jitter, never below the initial delay."""
        cfg = self._config
        growth: float = 2.0 ** (failed_attempt - 1)
        base = min(cfg.webhook_retry_initial_s * growth, cfg.webhook_retry_max_s)
        jittered = base * (1 + random.uniform(-JITTER, JITTER))
        return max(cfg.webhook_retry_initial_s, jittered)

    async def _attempt(self, delivery: Delivery, attempt: int) -> str:
        """One POST. Returns "ok", "fatal" (non-retryable status) or "retry"."""
        http = self._http
        if http is None:
            return "fatal"
        result: str
        outcome: str | int
        try:
            response = await http.post(
                delivery.url, content=delivery.body, headers=delivery.headers
            )
        except httpx.HTTPError as exc:
            outcome, result = f"{type(exc).__name__}", "retry"
        else:
            outcome = response.status_code
            if response.is_success:
                result = "ok"
            elif response.status_code in NON_RETRYABLE:
                result = "fatal"
            else:
                result = "retry"
        self.log.append(
            {
                "instance": delivery.instance,
                "event": delivery.event,
                "url": delivery.url,
                "attempt": attempt,
                "result": result,
                "outcome": outcome,
                "at": now_iso(),
            }
        )
        return result
