"""Parsing the `data` of Evolution's message, contact, chat, group and presence events into
plain records (evolution-api-v2.md §4).  Pure: no I/O.

Every parser raises only `WebhookError` on a payload it cannot use.  Shapes vary across
Evolution versions (object or array, `remoteJid` or `id`, LID or phone jids); the parsers
accept all documented variants and normalise jids so that one person is one jid:
the phone jid when it is known, the `@lid` otherwise (merged later when the pair is learned).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .webhook import WebhookError

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
_IGNORED_SUFFIXES = ("@broadcast", "@newsletter")
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


# ---- helpers ----------------------------------------------------------------------------------


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebhookError("invalid_data", f"{what} must be an object.")
    return value


def _items(value: Any, what: str) -> list[dict[str, Any]]:
    """Evolution sends some events as one object and others as an array of them."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [_obj(item, f"each item of {what}") for item in value]
    raise WebhookError("invalid_data", f"{what} must be an object or an array of objects.")


def _str(value: Any, limit: int = 1000) -> str | None:
    if isinstance(value, str) and value:
        return value[:limit]
    return None


def _int(value: Any) -> int | None:
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


def _timestamp(value: Any) -> int:
    """Unix seconds; milliseconds are scaled down, nonsense becomes 0 (stored as now)."""
    seconds = _int(value)
    if seconds is None or seconds < 0:
        return 0
    if seconds > LATEST_TIMESTAMP:
        seconds //= 1000
    return seconds if 0 < seconds <= LATEST_TIMESTAMP else 0


def _bool(value: Any) -> bool:
    return value is True


# ---- messages ---------------------------------------------------------------------------------

_META_KEYS = {"messageContextInfo", "base64", "mediaUrl", "contextInfo"}


def _message_type(data: dict[str, Any], message: dict[str, Any]) -> str:
    raw_type = data.get("messageType")
    if not isinstance(raw_type, str) or not raw_type:
        raw_type = next((k for k in message if k not in _META_KEYS), "unknown")
    if raw_type in ("conversation", "extendedTextMessage"):
        return "text"
    if raw_type.endswith("Message"):
        raw_type = raw_type[: -len("Message")]
    return raw_type[:64] or "unknown"


def _message_text(message: dict[str, Any]) -> str | None:
    text = message.get("conversation")
    if isinstance(text, str):
        return text[:MAX_TEXT]
    for key, content in message.items():
        if key in _META_KEYS or not isinstance(content, dict):
            continue
        for field_name in ("text", "caption"):
            value = content.get(field_name)
            if isinstance(value, str):
                return value[:MAX_TEXT]
    return None


def _quoted_id(data: dict[str, Any], message: dict[str, Any]) -> str | None:
    contexts = [data.get("contextInfo")]
    contexts += [c.get("contextInfo") for c in message.values() if isinstance(c, dict)]
    for context in contexts:
        if isinstance(context, dict):
            stanza = _str(context.get("stanzaId"), 200)
            if stanza:
                return stanza
    return None


def parse_message(data: Any) -> tuple[MessageRecord | None, tuple[Alias, ...]]:
    """One `messages.upsert` / `send.message` / `messages.set` item.

    Returns None for chats we never store (status broadcasts, newsletters).
    """
    data = _obj(data, "message data")
    key = _obj(data.get("key"), "message `key`")
    wa_id = _str(key.get("id"), 200)
    if wa_id is None:
        raise WebhookError("invalid_data", "The message key has no `id`.")
    raw_chat = key.get("remoteJid")
    if isinstance(raw_chat, str) and raw_chat.endswith(_IGNORED_SUFFIXES):
        return None, ()
    chat, chat_alias = resolve(raw_chat, key.get("remoteJidAlt") or key.get("senderPn"))
    if chat is None:
        raise WebhookError("invalid_data", "The message key has no usable `remoteJid`.")
    from_me = _bool(key.get("fromMe"))
    is_group = chat.endswith(GROUP_SERVER)
    aliases = [chat_alias] if chat_alias else []
    if is_group:
        sender, sender_alias = resolve(key.get("participant"), key.get("participantAlt"))
        if sender_alias:
            aliases.append(sender_alias)
    else:
        sender = None if from_me else chat
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    assert isinstance(message, dict)
    record = MessageRecord(
        wa_id=wa_id,
        chat_jid=chat,
        is_group=is_group,
        from_me=from_me,
        sender_jid=sender,
        push_name=None if from_me else _str(data.get("pushName"), 200),
        type=_message_type(data, message),
        text=_message_text(message),
        quoted_wa_id=_quoted_id(data, message),
        status=map_status(data.get("status"), "pending" if from_me else "delivered"),
        timestamp=_timestamp(data.get("messageTimestamp")),
        raw=data,
    )
    return record, tuple(aliases)


def _messages(items: Iterable[Any], live: bool) -> Batch:
    records: list[MessageRecord] = []
    aliases: list[Alias] = []
    notes: list[str] = []
    contacts: list[ContactRecord] = []
    for item in items:
        record, found = parse_message(item)
        aliases.extend(found)
        if record is None:
            notes.append("ignored a broadcast/newsletter message")
            continue
        records.append(record)
        who = record.sender_jid
        if who and not record.from_me and record.push_name:
            contacts.append(ContactRecord(who, push_name=record.push_name))
    return Batch(
        aliases=tuple(aliases),
        contacts=tuple(contacts),
        messages=tuple(records),
        live=live,
        notes=tuple(notes),
    )


def parse_receipts(data: Any) -> Batch:
    receipts = []
    for item in _items(data, "messages.update data"):
        key = item.get("key")
        wa_id = _str(item.get("keyId"), 200) or (
            _str(key.get("id"), 200) if isinstance(key, dict) else None
        )
        if wa_id is None:
            raise WebhookError("invalid_data", "A receipt has no `keyId`.")
        status = map_status(item.get("status"), "")
        if not status:
            continue  # poll updates and unknown statuses carry no delivery information
        receipts.append(Receipt(wa_id, _bool(item.get("fromMe")), status))
    return Batch(receipts=tuple(receipts))


def parse_deletes(data: Any) -> Batch:
    receipts = []
    for item in _items(data, "messages.delete data"):
        key = item.get("key") if isinstance(item.get("key"), dict) else item
        assert isinstance(key, dict)
        wa_id = _str(key.get("id"), 200)
        if wa_id is None:
            raise WebhookError("invalid_data", "A delete has no message `id`.")
        receipts.append(Receipt(wa_id, _bool(key.get("fromMe")), "deleted"))
    return Batch(receipts=tuple(receipts))


def parse_edit(data: Any) -> Batch:
    data = _obj(data, "messages.edited data")
    key = _obj(data.get("key"), "the edited message `key`")
    wa_id = _str(key.get("id"), 200)
    if wa_id is None:
        raise WebhookError("invalid_data", "The edited message key has no `id`.")
    edited = data.get("editedMessage")
    text = _message_text(edited) if isinstance(edited, dict) else None
    if text is None and isinstance(edited, dict) and isinstance(edited.get("message"), dict):
        text = _message_text(edited["message"])
    return Batch(
        edits=(Edit(wa_id, _bool(key.get("fromMe")), text, _int(data.get("timestampMs"))),)
    )


def parse_contacts(data: Any) -> Batch:
    contacts, aliases = [], []
    for item in _items(data, "contacts data"):
        jid, alias = resolve(item.get("remoteJid") or item.get("id"), item.get("lid"))
        if jid is None:
            continue
        if alias:
            aliases.append(alias)
        contacts.append(
            ContactRecord(
                jid,
                push_name=_str(item.get("pushName") or item.get("name") or item.get("notify"), 200),
                profile_pic_url=_str(item.get("profilePicUrl") or item.get("imgUrl"), 2000),
            )
        )
    return Batch(aliases=tuple(aliases), contacts=tuple(contacts))


def parse_chats(data: Any) -> Batch:
    chats = []
    for item in _items(data, "chats data"):
        jid = clean_jid(item.get("remoteJid") or item.get("id"))
        if jid is None or jid.endswith(_IGNORED_SUFFIXES):
            continue
        unread = _int(item.get("unreadMessages"))
        if unread is not None:
            unread = max(0, min(unread, 1_000_000))
        chats.append(ChatRecord(jid, _str(item.get("name"), 500), unread))
    return Batch(chats=tuple(chats))


def parse_chat_deletes(data: Any) -> Batch:
    items = data if isinstance(data, list) else [data]
    jids = [clean_jid(i.get("remoteJid") if isinstance(i, dict) else i) for i in items]
    return Batch(deleted_chats=tuple(j for j in jids if j))


def parse_presence(data: Any) -> Batch:
    data = _obj(data, "presence.update data")
    chat = clean_jid(data.get("id"))
    presences = data.get("presences")
    if chat is None or not isinstance(presences, dict):
        raise WebhookError("invalid_data", "presence.update needs `id` and `presences`.")
    found = []
    for who, info in presences.items():
        jid = clean_jid(who)
        if jid is None or not isinstance(info, dict):
            continue
        state = _str(info.get("lastKnownPresence"), 32) or "unavailable"
        found.append(Presence(chat, jid, state, _int(info.get("lastSeen"))))
    return Batch(presences=tuple(found))


def parse_groups(data: Any) -> Batch:
    groups = []
    for item in _items(data, "groups data"):
        jid = clean_jid(item.get("id"))
        if jid is None:
            continue
        members = item.get("participants")
        participants = None
        if isinstance(members, list):
            ids = [clean_jid(m.get("id") if isinstance(m, dict) else m) for m in members]
            participants = tuple(j for j in ids if j)
        groups.append(
            GroupRecord(
                jid,
                _str(item.get("subject"), 500),
                participants,
                _timestamp(item.get("subjectTime")) or None,
            )
        )
    return Batch(groups=tuple(groups))


def parse_participants(data: Any) -> Batch:
    data = _obj(data, "group-participants.update data")
    aliases = []
    contacts = []
    entries = data.get("participantsData")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        lid, phone = clean_jid(entry.get("jid")), clean_jid(entry.get("phoneNumber"))
        if phone is None and isinstance(entry.get("phoneNumber"), str):
            digits = entry["phoneNumber"].lstrip("+")
            phone = f"{digits}{USER_SERVER}" if digits.isdigit() else None
        if is_lid(lid) and is_phone_jid(phone):
            assert lid is not None and phone is not None
            aliases.append(Alias(lid, phone))
            contacts.append(ContactRecord(phone, push_name=_str(entry.get("name"), 200)))
    group = clean_jid(data.get("id"))
    groups = (GroupRecord(group, None, None),) if group and group.endswith(GROUP_SERVER) else ()
    return Batch(aliases=tuple(aliases), contacts=tuple(contacts), groups=groups)


# Stored but not applied (outcome `unhandled`): calls, labels, typebot, status.instance,
# instance.create/delete, send.message.update and 2.4.0's messaging-history.set (shapes
# unconfirmed).
MESSAGE_EVENTS = {
    "messages.upsert", "send.message", "messages.set",
    "messages.update", "messages.delete", "messages.edited",
    "contacts.upsert", "contacts.update", "contacts.set", "chats.upsert", "chats.update",
    "chats.set", "chats.delete", "presence.update", "groups.upsert", "groups.update",
    "group-participants.update",
}  # fmt: skip


def parse_batch(event: str, data: Any) -> Batch | None:
    """The records a webhook carries, or None for events this part does not handle."""
    match event:
        case "messages.upsert" | "send.message":
            return _messages([_obj(data, f"{event} data")], live=True)
        case "messages.set":
            return _messages(data if isinstance(data, list) else [data], live=False)
        case "messages.update":
            return parse_receipts(data)
        case "messages.delete":
            return parse_deletes(data)
        case "messages.edited":
            return parse_edit(data)
        case "contacts.upsert" | "contacts.update" | "contacts.set":
            return parse_contacts(data)
        case "chats.upsert" | "chats.update" | "chats.set":
            return parse_chats(data)
        case "chats.delete":
            return parse_chat_deletes(data)
        case "presence.update":
            return parse_presence(data)
        case "groups.upsert" | "groups.update":
            return parse_groups(data)
        case "group-participants.update":
            return parse_participants(data)
    return None
