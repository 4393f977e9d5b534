"""The hub and the mailbox on their own: bounded, never blocking the publisher or caller."""

from __future__ import annotations

import json

import pytest
import trio

from auzap_actors.actors.hub import Hub
from auzap_actors.actors.mailbox import ActorUnavailable, CallTimeout, Mailbox, MailboxFull, reply


async def test_hub_routes_by_user_and_org_and_cuts_off_a_slow_socket() -> None:
    hub = Hub(capacity=2)
    with (
        hub.subscribe("alice", "org1") as alice,
        hub.subscribe("carol", "org1") as carol,
        hub.subscribe("bob", None) as bob,
    ):
        hub.publish_user("alice", "status", {"n": 1})
        hub.publish_org("org1", "org.status", {"n": 1})
        assert json.loads(alice.receive.receive_nowait()) == {"type": "status", "data": {"n": 1}}
        assert json.loads(alice.receive.receive_nowait())["type"] == "org.status"
        assert json.loads(carol.receive.receive_nowait())["type"] == "org.status"
        with pytest.raises(trio.WouldBlock):
            bob.receive.receive_nowait()
        for n in range(3):  # carol reads nothing: the third frame overflows her queue
            hub.publish_user("carol", "message", {"n": n})
        assert carol.overflowed
        frames = [carol.receive.receive_nowait() for _ in range(2)]
        assert len(frames) == 2
        with pytest.raises(trio.EndOfChannel):
            carol.receive.receive_nowait()
        hub.publish_user("alice", "status", {"n": 2})  # others are unaffected
        assert json.loads(alice.receive.receive_nowait())["data"] == {"n": 2}
        assert hub.subscriber_count == 3
    assert hub.subscriber_count == 0
    assert repr(hub) == "<Hub subscribers=0 published=6 evicted=0 refused=0>"


async def test_mailbox_is_bounded_and_calls_time_out() -> None:
    box = Mailbox("user_x", capacity=2)
    box.cast("a")
    box.cast("b")
    with pytest.raises(MailboxFull):
        box.cast("c")
    assert box.stats() == {"size": 2, "capacity": 2, "peak": 2}
    assert repr(box) == "<Mailbox user_x [2/2, peak 2]>"
    box.get_nowait()
    box.get_nowait()

    async def answer_one() -> None:
        letter = await box.get()
        reply(letter, True, letter.message.upper())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_one)
        assert await box.call("ping", timeout=1) == "PING"
    with pytest.raises(CallTimeout):
        await box.call("nobody answers", timeout=0.01)

    async def park_later() -> None:
        await trio.sleep(0.01)
        box.drain_with(ActorUnavailable("parked"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(park_later)
        with pytest.raises(ActorUnavailable, match="parked"):
            await box.call("queued", timeout=1)
