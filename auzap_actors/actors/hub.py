"""Fan-out of live frames to browser sockets.

Publishing never blocks an actor: each subscriber has a bounded queue, and a subscriber that
falls behind is cut off (its socket closes with 1013 and the browser reconnects for a fresh
snapshot) instead of slowing everyone down.  Frames are encoded once per publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ..core.views import encode_frame


@dataclass(eq=False, slots=True)
class Subscription:
    user_id: str
    organization_id: str | None
    send: trio.MemorySendChannel[str]
    receive: trio.MemoryReceiveChannel[str]
    overflowed: bool = False

    def offer(self, text: str) -> None:
        if self.overflowed:
            return
        try:
            self.send.send_nowait(text)
        except trio.WouldBlock:
            self.overflowed = True
            self.send.close()
        except trio.ClosedResourceError:
            pass


@dataclass(slots=True)
class Hub:
    capacity: int = 256
    _by_user: dict[str, set[Subscription]] = field(default_factory=dict)
    _by_org: dict[str, set[Subscription]] = field(default_factory=dict)
    published: int = 0

    def __repr__(self) -> str:
        total = sum(len(s) for s in self._by_user.values())
        return f"<Hub subscribers={total} published={self.published}>"

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_user.values())

    @contextmanager
    def subscribe(self, user_id: str, organization_id: str | None) -> Iterator[Subscription]:
        send, receive = trio.open_memory_channel[str](self.capacity)
        sub = Subscription(user_id, organization_id, send, receive)
        self._by_user.setdefault(user_id, set()).add(sub)
        if organization_id:
            self._by_org.setdefault(organization_id, set()).add(sub)
        try:
            yield sub
        finally:
            self._discard(self._by_user, user_id, sub)
            if organization_id:
                self._discard(self._by_org, organization_id, sub)
            send.close()

    @staticmethod
    def _discard(index: dict[str, set[Subscription]], key: str, sub: Subscription) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    def publish_user(self, user_id: str | None, frame_type: str, data: Any) -> None:
        if user_id is None:
            return
        subs = self._by_user.get(user_id)
        if subs:
            text = encode_frame(frame_type, data)
            for sub in list(subs):
                sub.offer(text)
            self.published += 1

    def publish_org(self, organization_id: str | None, frame_type: str, data: Any) -> None:
        if organization_id is None:
            return
        subs = self._by_org.get(organization_id)
        if subs:
            text = encode_frame(frame_type, data)
            for sub in list(subs):
                sub.offer(text)
            self.published += 1

    def close_all(self) -> None:
        for subs in list(self._by_user.values()):
            for sub in list(subs):
                sub.send.close()
