"""The vocabulary of the per-instance step (`core.instance`): the inputs the actor feeds it and
the effects it asks the actor to carry out.  Plain frozen data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .auto_reply import (
    ExtendReply,
    IncomingText,
    LimitsPatch,
    Recompose,
    RecordReply,
    ReplyFacts,
    SendReply,
    SettleReply,
    SkipReply,
)
from .health import HealthEvent
from .state import CallConnect, CallLogout, Event

# Every Nth health check reads fetchInstances (connectionStatus and disconnectionReasonCode)
# instead of connectionState, which can report a stale state (evolution-api-v2.md §2.4).
FULL_CHECK_EVERY = 5

# ---- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Boot:
    """The actor started from its stored snapshot."""


@dataclass(frozen=True, slots=True)
class Tick:
    """The health timer fired."""


@dataclass(frozen=True, slots=True)
class Created:
    """Evolution has the instance now (created, or ``adopted``: it was there already, maybe
    with a session)."""

    adopted: bool = False


@dataclass(frozen=True, slots=True)
class OrganizationChanged:
    """The user's token names another organization (or none): `org.*` frames follow them."""

    organization_id: str | None


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """The user changed the instance's settings (None: that one is left as it is)."""

    auto_reply: bool | None = None
    prompt: str | None = None
    limits: LimitsPatch | None = None  # the auto-reply limits it names


@dataclass(frozen=True, slots=True)
class TextsArrived:
    """Messages a batch stored for the first time, with what the database says about their
    chats (read just before, in the transaction that applies the batch)."""

    texts: tuple[IncomingText, ...]
    facts: ReplyFacts


@dataclass(frozen=True, slots=True)
class ReplyComposed:
    """The responder's answer for a decided reply (``text``), or why it has none (``error``).
    ``answers_then``/``answers_now``: the messages the reply answered when composing began and
    now (more arrived meanwhile: it is composed again)."""

    reply_id: int
    chat_jid: str
    text: str | None
    error: str | None
    answers_then: int
    answers_now: int


@dataclass(frozen=True, slots=True)
class Forgotten:
    """Evolution answered 404 for the instance (its storage was reset)."""


CheckPurpose = Literal["periodic", "boot", "reconcile"]


@dataclass(frozen=True, slots=True)
class Observed:
    """Evolution's answer to a ``RunCheck``: a connection state (``connection_state`` with the
    reason code ``fetchInstances`` gives), ``missing`` (404), or ``unreachable`` (why).
    ``census``: the node's census answered (an open), not a call about this instance."""

    purpose: CheckPurpose
    connection_state: str | None = None
    reason_code: int | None = None
    missing: bool = False
    unreachable: str | None = None
    census: bool = False


@dataclass(frozen=True, slots=True)
class ConnectAnswered:
    """Evolution's answer to ``CallConnect``: ``state`` open, or a QR (or neither yet)."""

    state: str | None
    qr: str | None


@dataclass(frozen=True, slots=True)
class ResumeAnswered:
    """Whether the session dropped while we were down opened again at boot."""

    opened: bool
    pending: HealthEvent  # what the boot check saw, judged if the resume did not open


ReconnectResult = Literal["open", "qr", "pending", "unreachable", "refused"]


@dataclass(frozen=True, slots=True)
class ReconnectOutcome:
    """Evolution's answer to ``CallReconnect``."""

    result: ReconnectResult
    qr: str | None = None
    detail: str = ""
    created: bool = False  # the instance was created in Evolution first


Input = (
    Event
    | Boot
    | Tick
    | Created
    | Forgotten
    | OrganizationChanged
    | SettingsChanged
    | TextsArrived
    | ReplyComposed
    | Observed
    | ConnectAnswered
    | ResumeAnswered
    | ReconnectOutcome
)

# ---- effects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist:
    """Write the new snapshot (always the first effect when present)."""


Audience = Literal["user", "org"]


@dataclass(frozen=True, slots=True)
class Publish:
    """A WebSocket frame for the instance's user or its organization."""

    audience: Audience
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EnsureCreated:
    """Create (or adopt) the instance in Evolution; answered with ``Created``."""


@dataclass(frozen=True, slots=True)
class Feed:
    """Feed this input once the effects before it succeeded."""

    input: Input


@dataclass(frozen=True, slots=True)
class SyncWebhook:
    """Make Evolution call back our current URL and secret; a 404 is answered ``Forgotten``."""


@dataclass(frozen=True, slots=True)
class RunCheck:
    """Ask Evolution for the instance's state (``full``: through fetchInstances); answered
    with ``Observed``.  ``shared``: an `open` in the node's census of every instance
    (evolution/census.py) may answer it; anything else is asked for this instance alone."""

    purpose: CheckPurpose
    full: bool
    shared: bool = False


@dataclass(frozen=True, slots=True)
class ResumeSession:
    """Connect once a session that dropped while we were down; answered ``ResumeAnswered``."""

    pending: HealthEvent


@dataclass(frozen=True, slots=True)
class CallReconnect:
    """Automatic reconnect ``attempt``: ``restart`` a session stuck connecting, else connect;
    create the instance first when Evolution lost it.  Answered with ``ReconnectOutcome``."""

    attempt: int
    restart: bool
    create_first: bool


Effect = (
    Persist
    | Publish
    | EnsureCreated
    | Feed
    | CallConnect
    | CallLogout
    | SyncWebhook
    | RunCheck
    | ResumeSession
    | CallReconnect
    | RecordReply
    | ExtendReply
    | SkipReply
    | SendReply
    | SettleReply
    | Recompose
)
