"""The inbox's doorbell: which instances have new rows.  The inbox writer rings it and never
waits; whoever listens (the supervisor) gets every name rung since it last listened, at once.
The store knows nothing of who listens."""

from __future__ import annotations

import trio


class Doorbell:
    def __init__(self) -> None:
        self._names: set[str] = set()
        self._rung = trio.Event()

    def __repr__(self) -> str:
        return f"<Doorbell pending={len(self._names)}>"

    def ring(self, names: set[str]) -> None:
        self._names |= names
        self._rung.set()

    async def wait(self) -> set[str]:
        """The names rung since the last call (waits until there is at least one)."""
        await self._rung.wait()
        self._rung = trio.Event()
        names, self._names = self._names, set()
        return names
