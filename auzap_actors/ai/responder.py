"""The one interface every responder implements, and what it is asked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

# What every reply is told before the business's own instructions.
SYSTEM_PREAMBLE = (
    "You answer WhatsApp messages on behalf of a business. Reply in the customer's language,"
    " briefly, in plain text. If several messages arrived, answer all of them in one reply."
    " The business's instructions follow."
)


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of the conversation: the contact's (``user``) or ours (``assistant``)."""

    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    prompt: str  # the business's instructions (may be empty)
    conversation: tuple[Turn, ...]  # oldest first; the last ones are the contact's to answer
    contact_name: str | None = None


class ResponderError(Exception):
    """No reply this time (the provider is down, refused, too slow, or its circuit is open);
    the message says why, without secrets."""


class Responder(Protocol):
    name: str

    async def reply(self, request: ReplyRequest) -> str:
        """The reply's text; raises ResponderError."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON for /admin/tree (no key, no secret)."""
        ...

    async def aclose(self) -> None: ...
