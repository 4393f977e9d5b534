"""Fan-out of live frames to browser sockets.

Publishing never blocks an actor: each subscriber has a bounded queue, and a subscriber that
falls behind is cut off (its socket closes with 1013 and the browser reconnects for a fresh
snapshot) instead of slowing everyone down.  Frames are encoded once per publish.

A socket whose transport can be written directly (`DirectWriter`, given by the launcher) gets
each frame written in the publisher's own step when nothing is queued for it: one
non-blocking write of wire bytes encoded once per publish, instead of waking that socket's
task to go through Quart, wsproto and hypercorn.  What the kernel does not take at once (the
rest of a frame, and every frame after it) goes through the queue as before, so frames keep
their order and a slow reader still fills its queue and is cut off.  The price: a publish
holds the loop for one write per socket (on loopback, 1,000 sockets took 10-30 ms under load,
about what the kernel alone costs; the old path spent several times that, spread out).

Sockets are bounded twice: a user keeps at most `per_user` of them (one more evicts that
user's oldest, which the socket closes with 4409), and the node serves at most `max_sockets`
(one more is refused with `SocketsFull` before its upgrade).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio
from wsproto.frame_protocol import FrameProtocol

from ..core.views import encode_frame


class Frame(str):
    """A frame's JSON text, carrying its WebSocket wire form once someone asked for it: one
    publish hands the same Frame to every subscriber, so the bytes are built once."""

    _wire: bytes | None = None

    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._wire = text_frame(self)
        return wire


def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked WebSocket text frame (RFC 6455 §5.2), as a server sends it,
    framed by wsproto (hypercorn's own WebSocket library).  Never compressed: under
    permessage-deflate a message without RSV1 is a plain one (RFC 7692 §6), so the same bytes
    serve every client."""
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text, fin=True))


def wire_bytes(item: str | bytes) -> bytes:
    """What goes on the wire for a queued item: a frame's bytes (built once for a `Frame`),
    or, as they are, the rest of a frame whose start was already written."""
    if isinstance(item, bytes):
        return item
    return item.wire() if isinstance(item, Frame) else text_frame(item)


# The key of a WebSocket scope's extensions under which the launcher (`http_server`) hands the
# socket's handler its connection's DirectWriter.
DIRECT_SOCKET = "auzap.direct_socket"


class DirectWriter(Protocol):
    """A browser socket's transport, as the launcher exposes it (`http_server.DirectSocket`)."""

    def send_nowait(self, data: bytes) -> int:
        """Write what the kernel takes now without waiting; how many bytes (0 when the
        transport is busy with another write, full, or gone)."""
        ...

    async def send_all(self, data: bytes) -> None:
        """Write all of `data` after any write in progress (bounded by the send timeout)."""
        ...


class SocketsFull(Exception):
    """This node already serves as many browser sockets as it may (AUZAP_WS_MAX)."""


@dataclass(eq=False, slots=True)
class Subscription:
    user_id: str
    organization_id: str | None
    # Queued for the socket's task: frames (str), or the rest of a frame whose start was
    # already written directly (bytes), which must reach the wire before anything else.
    send: trio.MemorySendChannel[str | bytes]
    receive: trio.MemoryReceiveChannel[str | bytes]
    overflowed: bool = False
    evicted: bool = False
    # Set by the socket's task once its opening frames are out; None: every frame is queued.
    direct: DirectWriter | None = None
    # Items queued or still being written by the socket's task: a frame is written directly
    # only when this is 0, so it can never overtake an earlier one.
    pending: int = 0

    def evict(self) -> None:
        """The user opened one socket too many and this one is the oldest: end its stream."""
        self.evicted = True
        self.send.close()

    def offer(self, text: str, *, may_write: bool = True) -> None:
        """Write the frame now if nothing is queued for this socket (and `may_write`), else
        queue it for the socket's task."""
        if self.overflowed:
            return
        direct = self.direct
        if may_write and direct is not None and self.pending == 0:
            wire = wire_bytes(text)
            sent = direct.send_nowait(wire)
            if sent == len(wire):
                return
            if sent:
                self._queue(wire[sent:])
                return
        self._queue(text)

    def _queue(self, item: str | bytes) -> None:
        try:
            self.send.send_nowait(item)
        except trio.WouldBlock:
            self.overflowed = True
            self.send.close()
        except trio.ClosedResourceError:
            pass
        else:
            self.pending += 1

    def written(self, count: int) -> None:
        """The socket's task has written `count` items it took from the queue."""
        self.pending -= count

    def detach(self) -> bytes:
        """Stop direct writes (the socket is about to close); the rest of a frame already begun
        on the wire, if one is queued, which must be written before the closing frame."""
        self.direct = None
        try:
            item = self.receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return b""
        return item if isinstance(item, bytes) else b""


# Direct writes one publish makes in the publisher's own step; the sockets after them get the
# frame from their own tasks.  1,000 loopback writes take 5-30 ms: a publish to a very large
# organization must not hold the loop for ten times that.
DIRECT_WRITES_PER_PUBLISH = 1000


@dataclass(slots=True)
class Hub:
    capacity: int = 256
    per_user: int = 5
    max_sockets: int = 10000
    # dicts as ordered sets: a user's first subscription is their oldest.
    _by_user: dict[str, dict[Subscription, None]] = field(default_factory=dict)
    _by_org: dict[str, dict[Subscription, None]] = field(default_factory=dict)
    # Subscriptions whose socket is still served, evicted ones included until their handler
    # has closed them: the node's cap counts sockets, not index entries.
    _open: int = 0
    published: int = 0
    evicted: int = 0
    refused: int = 0

    def __repr__(self) -> str:
        return (
            f"<Hub subscribers={self.subscriber_count} published={self.published} "
            f"evicted={self.evicted} refused={self.refused}>"
        )

    def stats(self) -> dict[str, int]:
        """What the operators' tree shows of the hub (its repr, as fields)."""
        return {
            "subscribers": self.subscriber_count,
            "open_sockets": self.open_sockets,
            "published": self.published,
            "evicted": self.evicted,
            "refused": self.refused,
        }

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_user.values())

    @property
    def open_sockets(self) -> int:
        return self._open

    def user_subscriber_count(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def user_backlog(self, user_id: str) -> int:
        """Frames (or rests of frames) queued behind a user's sockets, not yet written."""
        return sum(sub.pending for sub in self._by_user.get(user_id, ()))

    @contextmanager
    def subscribe(self, user_id: str, organization_id: str | None) -> Iterator[Subscription]:
        """Register a socket for the duration of the block.

        Raises SocketsFull (before registering anything) when `max_sockets` are open.  When
        the user then has more than `per_user` subscriptions, the oldest are evicted."""
        if self._open >= self.max_sockets:
            self.refused += 1
            raise SocketsFull(f"This server already serves {self._open} live sockets.")
        send, receive = trio.open_memory_channel[str | bytes](self.capacity)
        sub = Subscription(user_id, organization_id, send, receive)
        mine = self._by_user.setdefault(user_id, {})
        mine[sub] = None
        if organization_id:
            self._by_org.setdefault(organization_id, {})[sub] = None
        while len(mine) > self.per_user:
            oldest = next(iter(mine))
            # Out of the index at once: it gets no more frames, and it no longer counts
            # against the user even if its socket takes a while to close.
            self._remove(oldest)
            oldest.evict()
            self.evicted += 1
        self._open += 1
        try:
            yield sub
        finally:
            self._open -= 1
            self._remove(sub)
            send.close()

    def _remove(self, sub: Subscription) -> None:
        self._discard(self._by_user, sub.user_id, sub)
        if sub.organization_id:
            self._discard(self._by_org, sub.organization_id, sub)

    @staticmethod
    def _discard(index: dict[str, dict[Subscription, None]], key: str, sub: Subscription) -> None:
        subs = index.get(key)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del index[key]

    def publish_user(self, user_id: str | None, frame_type: str, data: Any) -> None:
        if user_id is None:
            return
        subs = self._by_user.get(user_id)
        if subs:
            self._fan_out(subs, Frame(encode_frame(frame_type, data)))

    def publish_org(self, organization_id: str | None, frame_type: str, data: Any) -> None:
        if organization_id is None:
            return
        subs = self._by_org.get(organization_id)
        if subs:
            self._fan_out(subs, Frame(encode_frame(frame_type, data)))

    def _fan_out(self, subs: dict[Subscription, None], frame: Frame) -> None:
        for index, sub in enumerate(list(subs)):
            sub.offer(frame, may_write=index < DIRECT_WRITES_PER_PUBLISH)
        self.published += 1

    def close_all(self) -> None:
        for subs in list(self._by_user.values()):
            for sub in list(subs):
                sub.send.close()
