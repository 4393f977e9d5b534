"""The Evolution client's connections: a few lanes, each holding one kept-alive connection
(an httpx client of one connection), lent to one request at a time.

Why not one httpx client with a pool of N connections: httpcore's pool, on every request it
assigns, walks every connection it holds and asks each whether it expired (a `poll` system
call per connection) and whether it is idle, and walks its whole queue of waiting requests
(O(queue x connections), encode/httpcore#1035).  With 32 connections this was most of the
service's CPU in `auzap-actors bench health`.  A lane's pool holds one connection, so each
request asks one question; the queue is a trio limiter's, O(1) per request.

Two clocks: the wait for a free lane (``wait_s``, long: a burst of thousands of checks at
boot queues here, and Evolution is not slow because of it) and the request itself
(``timeout_s``, from the moment it holds a lane): a check that waited in the queue is not
"Evolution unreachable".
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import httpx
import trio


class NoLaneFree(Exception):
    """No lane became free within the wait; nothing was sent."""


class Lanes:
    def __init__(self, count: int, make: Callable[[ssl.SSLContext], httpx.AsyncClient]):
        if count < 1:
            raise ValueError(f"count must be >= 1, not {count}")
        self.count = count
        self._make = make
        self._ssl: ssl.SSLContext | None = None
        self._free: list[httpx.AsyncClient] = []
        self._all: list[httpx.AsyncClient] = []
        self._limiter = trio.CapacityLimiter(count)

    def __repr__(self) -> str:
        return f"<Lanes {len(self._all)}/{self.count} open, {self.waiting} waiting>"

    @property
    def waiting(self) -> int:
        return self._limiter.statistics().tasks_waiting

    @property
    def busy(self) -> int:
        return self._limiter.borrowed_tokens

    def _take(self) -> httpx.AsyncClient:
        if self._free:
            return self._free.pop()
        # Lanes open on demand (a client of few calls never opens 32); they share one TLS
        # context, which is costly to build.
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        client = self._make(self._ssl)
        self._all.append(client)
        return client

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, str] | None,
        wait_s: float,
        timeout_s: float,
    ) -> httpx.Response:
        """Raises NoLaneFree after ``wait_s`` without a lane, trio.TooSlowError when the
        exchange itself takes longer than ``timeout_s``, httpx's transport errors."""
        with trio.move_on_after(wait_s) as waited:
            await self._limiter.acquire()
        if waited.cancelled_caught:  # acquire() holds nothing when it is cancelled
            raise NoLaneFree(f"no connection free after {wait_s:g}s")
        client = self._take()
        try:
            # httpx timeouts are per phase; fail_after bounds the whole exchange.
            with trio.fail_after(timeout_s):
                return await client.request(method, path, json=json, params=params)
        finally:
            self._free.append(client)
            self._limiter.release()

    async def aclose(self) -> None:
        clients, self._all, self._free = self._all, [], []
        for client in clients:
            await client.aclose()
