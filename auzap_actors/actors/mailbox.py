"""A bounded actor mailbox with `cast` (fire and forget) and `call` (reply with timeout).

A full mailbox answers the caller at once (`MailboxFull`, turned into 503 + Retry-After by the
front); it never blocks a request or grows without limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

from ..observability.logs import current_correlation


class ActorError(Exception):
    """Base of the errors a caller of an actor can get."""


class MailboxFull(ActorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the actor of {name} is busy (mailbox full)")


class ActorUnavailable(ActorError):
    """The actor is parked after a crash loop, stopped, or not started."""


class DatabaseUnavailable(ActorUnavailable):
    """The database is not reachable right now: answered 503 + Retry-After, nothing lost."""


class CallTimeout(ActorError):
    pass


@dataclass(frozen=True, slots=True)
class Letter:
    message: Any
    reply: trio.MemorySendChannel[tuple[bool, Any]] | None
    # The sender's correlation id (its HTTP request's): the actor logs under it while it
    # handles this letter (contextvars do not cross a channel).
    correlation: str | None = None


class Mailbox:
    """The letters of one actor, received by that actor alone.

    Not a trio memory channel: a process holds one mailbox per instance (100k of them), and
    an idle one is a few slots here (the queue exists only while letters wait), where a
    channel pair with its statistics and waiter sets costs ~1.8 KiB."""

    __slots__ = ("_doorbell", "_letters", "_receiver", "capacity", "name", "peak")

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.peak = 0
        self._doorbell = False
        self._letters: deque[Letter] | None = None  # None while empty
        self._receiver: trio.lowlevel.Task | None = None  # the actor, parked in receive()

    def __repr__(self) -> str:
        return f"<Mailbox {self.name} [{self.size}/{self.capacity}, peak {self.peak}]>"

    @property
    def size(self) -> int:
        return 0 if self._letters is None else len(self._letters)

    def stats(self) -> dict[str, int]:
        return {"size": self.size, "capacity": self.capacity, "peak": self.peak}

    def _post(self, letter: Letter) -> None:
        letters = self._letters
        if letters is None:
            letters = self._letters = deque()
        elif len(letters) >= self.capacity:
            raise MailboxFull(self.name)
        letters.append(letter)
        self.peak = max(self.peak, len(letters))
        if self._receiver is not None:
            task, self._receiver = self._receiver, None
            trio.lowlevel.reschedule(task)

    def get_nowait(self) -> Letter:
        """The oldest letter; trio.WouldBlock when there is none."""
        letters = self._letters
        if not letters:
            raise trio.WouldBlock
        letter = letters.popleft()
        if not letters:
            self._letters = None  # an idle mailbox keeps no queue
        return letter

    async def get(self) -> Letter:
        """The oldest letter, waiting for one (a checkpoint either way, like a channel)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._letters:
            letter = self.get_nowait()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return letter
        while not self._letters:  # woken by a letter (drain_with may take it first)
            if self._receiver is not None:
                raise trio.BusyResourceError(f"the mailbox of {self.name} has a receiver")
            self._receiver = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        return self.get_nowait()

    def _abort(self, _: Any) -> trio.lowlevel.Abort:
        self._receiver = None  # cancelled while waiting
        return trio.lowlevel.Abort.SUCCEEDED

    def cast(self, message: Any) -> None:
        """Queue a message; raises MailboxFull."""
        self._post(Letter(message, None, current_correlation()))

    async def call(self, message: Any, timeout: float) -> Any:
        """Queue a message and wait for the actor's reply.

        Raises MailboxFull, CallTimeout, or whatever exception the actor answered with.
        On cancellation the message may still be processed later.
        """
        reply_send, reply_receive = trio.open_memory_channel[tuple[bool, Any]](1)
        self._post(Letter(message, reply_send, current_correlation()))
        with trio.move_on_after(timeout):
            try:
                ok, value = await reply_receive.receive()
            except trio.EndOfChannel:
                raise ActorUnavailable(f"the actor of {self.name} stopped") from None
            if ok:
                return value
            raise value
        raise CallTimeout(f"the actor of {self.name} did not answer within {timeout:g} s")

    def ring(self, message: Any) -> None:
        """A doorbell that coalesces: `message` is queued unless the bell already rang, and a
        ring that finds the mailbox full is not lost (the actor answers the doorbell after the
        letter it is handling)."""
        if self._doorbell:
            return
        self._doorbell = True
        try:
            self.cast(message)
        except MailboxFull:
            pass

    def answer_doorbell(self) -> bool:
        """True (once) when the bell rang since the last answer."""
        rang, self._doorbell = self._doorbell, False
        return rang

    def drain_with(self, error: Exception) -> None:
        """Answer every queued call with `error` (the actor is parked or stopped)."""
        while True:
            try:
                letter = self.get_nowait()
            except trio.WouldBlock:
                return
            if letter.reply is not None:
                reply(letter, False, error)


def reply(letter: Letter, ok: bool, value: Any) -> None:
    if letter.reply is None:
        return
    try:
        letter.reply.send_nowait((ok, value))
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the caller gave up (timeout or cancellation)
    letter.reply.close()
