"""Background tasks that can be cancelled individually or all at once.

The simulator needs fire-and-forget tasks (webhook workers, retries, QR timers) that
``/_sim/reset`` and instance deletion can cancel synchronously from an HTTP handler.
Each task runs inside its own cancel scope, registered in one or more sets.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

log = logging.getLogger(__name__)


class Spawner:
    def __init__(self, name: str) -> None:
        self._name = name
        self._nursery: trio.Nursery | None = None
        self._scopes: set[trio.CancelScope] = set()

    def bind(self, nursery: trio.Nursery | None) -> None:
        self._nursery = nursery

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def spawn(
        self,
        fn: Callable[..., Awaitable[Any]],
        *args: Any,
        groups: tuple[set[trio.CancelScope], ...] = (),
    ) -> trio.CancelScope:
        """Start ``fn(*args)``; cancelling the returned scope (or any set in ``groups``
        via :func:`cancel_all`) stops it, even before it has started."""
        if self._nursery is None:
            raise RuntimeError(f"{self._name} is not running (call its run() first)")
        scope = trio.CancelScope()
        members = (self._scopes, *groups)
        for group in members:
            group.add(scope)

        async def runner() -> None:
            try:
                with scope:
                    await fn(*args)
            except Exception:
                # One broken task must not take the whole simulator down with it.
                log.exception("%s: background task %r failed", self._name, fn)
            finally:
                for group in members:
                    group.discard(scope)

        self._nursery.start_soon(runner)
        return scope

    def cancel_all(self) -> None:
        cancel_all(self._scopes)


def cancel_all(scopes: set[trio.CancelScope]) -> None:
    for scope in list(scopes):
        scope.cancel()
    scopes.clear()
