"""Messages an instance actor understands (sent through its mailbox)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.auto_reply import LimitsPatch


@dataclass(frozen=True, slots=True)
class Connect:
    """Create the instance in Evolution if needed, then connect (QR follows). Replies with the
    snapshot."""


@dataclass(frozen=True, slots=True)
class Logout:
    """Log the WhatsApp session out, keep the instance. Replies with the snapshot."""


@dataclass(frozen=True, slots=True)
class DeleteInstance:
    """Delete the instance in Evolution and here; the actor then stops. Replies None.
    Messages, conversations and contacts are kept unless `purge`."""

    purge: bool = False


@dataclass(frozen=True, slots=True)
class SetOrganization:
    """The user's current organization, from their token. Replies with the snapshot."""

    organization_id: str | None


@dataclass(frozen=True, slots=True)
class ChangeSettings:
    """New instance settings (None: left as it is). Replies with the snapshot."""

    auto_reply: bool | None
    auto_reply_prompt: str | None
    limits: LimitsPatch | None = None


@dataclass(frozen=True, slots=True)
class ReplyReady:
    """The composer's answer for a decided auto-reply: the text, or why there is none (both
    None: auto-reply was off).  `answers`: the messages it answered when composing began."""

    reply_id: int
    chat_jid: str
    text: str | None
    error: str | None
    answers: int


@dataclass(frozen=True, slots=True)
class ResumeSend:
    """An auto-reply left `sending` (a crash or an uncertain send): settle it from its echo,
    or send it again once the grace has passed."""

    reply_id: int


@dataclass(frozen=True, slots=True)
class DrainInbox:
    """New webhook rows were committed for this instance."""


@dataclass(frozen=True, slots=True)
class SendText:
    """Send a text through Evolution; replies with the stored MessageView."""

    to: str
    text: str


class NotConnected(Exception):
    """The instance is not open; the front answers 409."""


@dataclass(frozen=True, slots=True)
class HealthTick:
    """Time for a health check (cast by the actor's own timer)."""


@dataclass(frozen=True, slots=True)
class Barrier:
    """Replies None once everything queued before it was handled (tests, drills)."""


@dataclass(frozen=True, slots=True)
class Crash:
    """Raise inside the actor (fault injection for tests and operators' drills)."""

    reason: str = "injected crash"


class InjectedCrash(RuntimeError):
    pass
