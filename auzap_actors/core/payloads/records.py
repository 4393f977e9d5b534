"""The records the payload parsers produce, and the value and jid helpers they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..webhook import WebhookError

# Delivery order; `error` and `deleted` rank above everything, so they are terminal and a
# receipt can never move a status backwards, whatever order receipts arrive in.
STATUS_RANK: dict[str, int] = {
    "pending": 1, "server_ack": 2, "delivered": 3, "read": 4, "played": 5,
    "error": 6, "deleted": 7,
}  # fmt: skip
_EVOLUTION_STATUS: dict[Any, str] = {
    "ERROR": "error", "PENDING": "pending", "SERVER_ACK": "server_ack",
    "DELIVERY_ACK": "delivered", "READ": "read", "PLAYED": "played", "DELETED": "deleted",
    0: "error", 1: "pending", 2: "server_ack", 3: "delivered", 4: "read", 5: "played",
}  # fmt: skip

USER_SERVER = "@s.whatsapp.net"
LID_SERVER = "@lid"
GROUP_SERVER = "@g.us"
IGNORED_SUFFIXES = ("@broadcast", "@newsletter")
MAX_TEXT = 65536


def map_status(value: Any, default: str = "pending") -> str:
    if isinstance(value, str):
        return _EVOLUTION_STATUS.get(value.upper(), default)
    if isinstance(value, int) and not isinstance(value, bool):
        return _EVOLUTION_STATUS.get(value, default)
    return default


def clean_jid(value: Any) -> str | None:
    """`5511999:12@s.whatsapp.net` -> `5511999@s.whatsapp.net`; None for non-jids."""
    if not isinstance(value, str) or "@" not in value or len(value) > 200:
        return None
    user, _, server = value.strip().partition("@")
    user = user.split(":", 1)[0]
    if not user or not server:
        return None
    return f"{user}@{server}"


def is_lid(jid: str | None) -> bool:
    return jid is not None and jid.endswith(LID_SERVER)


def is_phone_jid(jid: str | None) -> bool:
    return jid is not None and jid.endswith(USER_SERVER)


def phone_of(jid: str | None) -> str | None:
    if is_phone_jid(jid):
        assert jid is not None
        user = jid.split("@", 1)[0]
        return user if user.isdigit() else None
    return None


@dataclass(frozen=True, slots=True)
class Alias:
    """A person's `@lid` and phone jid, learned from `*Alt` fields or `participantsData`."""

    lid: str
    phone_jid: str


def resolve(jid: Any, alt: Any) -> tuple[str | None, Alias | None]:
    """The canonical jid of an address and its alt, and the LID/phone pair if both known."""
    main, other = clean_jid(jid), clean_jid(alt)
    if main is None:
        return other, None
    if is_lid(main) and is_phone_jid(other):
        assert other is not None
        return other, Alias(main, other)
    if is_phone_jid(main) and is_lid(other):
        assert other is not None
        return main, Alias(other, main)
    return main, None


@dataclass(frozen=True, slots=True)
class MessageRecord:
    wa_id: str
    chat_jid: str
    is_group: bool
    from_me: bool
    sender_jid: str | None
    push_name: str | None
    type: str
    text: str | None
    quoted_wa_id: str | None
    status: str
    timestamp: int  # unix seconds
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Receipt:
    wa_id: str
    from_me: bool
    status: str


@dataclass(frozen=True, slots=True)
class Edit:
    wa_id: str
    from_me: bool
    text: str | None
    edited_at_ms: int | None


@dataclass(frozen=True, slots=True)
class ContactRecord:
    jid: str
    push_name: str | None = None
    profile_pic_url: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRecord:
    jid: str
    name: str | None = None
    unread: int | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    chat_jid: str
    participant_jid: str
    presence: str
    last_seen: int | None


@dataclass(frozen=True, slots=True)
class GroupRecord:
    jid: str
    subject: str | None
    participants: tuple[str, ...] | None  # None: this event says nothing about members
    subject_time: int | None = None  # when the subject was set: a late, older one loses


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything one webhook says, in the order it must be applied."""

    aliases: tuple[Alias, ...] = ()
    contacts: tuple[ContactRecord, ...] = ()
    chats: tuple[ChatRecord, ...] = ()
    groups: tuple[GroupRecord, ...] = ()
    messages: tuple[MessageRecord, ...] = ()
    receipts: tuple[Receipt, ...] = ()
    edits: tuple[Edit, ...] = ()
    deleted_chats: tuple[str, ...] = ()
    presences: tuple[Presence, ...] = ()
    live: bool = True  # False for history sync: stored, not pushed as new messages
    notes: tuple[str, ...] = field(default=())  # items skipped on purpose (broadcasts...)

    def summary(self) -> str:
        """What the batch holds, in words: `2 messages, 1 contact`."""
        parts = [
            f"{len(items)} {name}{'' if len(items) == 1 else 's'}"
            for name, items in (
                ("alias", self.aliases),
                ("contact", self.contacts),
                ("chat", self.chats),
                ("group", self.groups),
                ("message", self.messages),
                ("receipt", self.receipts),
                ("edit", self.edits),
                ("chat deletion", self.deleted_chats),
                ("presence", self.presences),
            )
            if items
        ]
        return ", ".join(parts) or "nothing (every item skipped)"


# ---- helpers ----------------------------------------------------------------------------------


def as_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookError("invalid_data", f"{what} must be an object.")
    return value


def as_objects(value: Any, what: str) -> list[dict[str, Any]]:
    """Evolution sends some events as one object and others as an array of them."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [as_object(item, f"each item of {what}") for item in value]
    raise WebhookError("invalid_data", f"{what} must be an object or an array of objects.")


def as_text(value: Any, limit: int = 1000) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return int(value)
    if isinstance(value, dict):
        # protobuf Long as JSON: {"low": .., "high": .., "unsigned": ..}
        low, high = value.get("low"), value.get("high", 0)
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            return low % 2**32 + high * 2**32
    return None


LATEST_TIMESTAMP = 4_102_444_800  # 2100-01-01: anything later is not a message time


def as_timestamp(value: Any) -> int:
    """Unix seconds; milliseconds are scaled down, nonsense becomes 0 (stored as now)."""
    seconds = as_int(value)
    if seconds is None or seconds < 0:
        return 0
    if seconds > LATEST_TIMESTAMP:
        seconds //= 1000
    return seconds if 0 < seconds <= LATEST_TIMESTAMP else 0


def as_flag(value: Any) -> bool:
    return value is True
