"""Message events: new messages, delivery receipts, deletes and edits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..webhook import WebhookError
from .records import (
    GROUP_SERVER,
    IGNORED_SUFFIXES,
    MAX_TEXT,
    Alias,
    Batch,
    ContactRecord,
    Edit,
    MessageRecord,
    Receipt,
    as_flag,
    as_int,
    as_object,
    as_objects,
    as_text,
    as_timestamp,
    map_status,
    resolve,
)

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
            stanza = as_text(context.get("stanzaId"), 200)
            if stanza:
                return stanza
    return None


def _key_id(key: dict[str, Any], missing: str) -> str:
    """The WhatsApp message id of a Baileys key; `missing` is the error sentence."""
    wa_id = as_text(key.get("id"), 200)
    if wa_id is None:
        raise WebhookError("invalid_data", missing)
    return wa_id


def parse_message(data: Any) -> tuple[MessageRecord | None, tuple[Alias, ...]]:
    """One `messages.upsert` / `send.message` / `messages.set` item.

    Returns None for chats we never store (status broadcasts, newsletters).
    """
    data = as_object(data, "message data")
    key = as_object(data.get("key"), "message `key`")
    wa_id = _key_id(key, "The message key has no `id`.")
    raw_chat = key.get("remoteJid")
    if isinstance(raw_chat, str) and raw_chat.endswith(IGNORED_SUFFIXES):
        return None, ()
    chat, chat_alias = resolve(raw_chat, key.get("remoteJidAlt") or key.get("senderPn"))
    if chat is None:
        raise WebhookError("invalid_data", "The message key has no usable `remoteJid`.")
    from_me = as_flag(key.get("fromMe"))
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
        push_name=None if from_me else as_text(data.get("pushName"), 200),
        type=_message_type(data, message),
        text=_message_text(message),
        quoted_wa_id=_quoted_id(data, message),
        status=map_status(data.get("status"), "pending" if from_me else "delivered"),
        timestamp=as_timestamp(data.get("messageTimestamp")),
        raw=data,
    )
    return record, tuple(aliases)


def parse_messages(items: Iterable[Any], live: bool) -> Batch:
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
    for item in as_objects(data, "messages.update data"):
        key = item.get("key")
        wa_id = as_text(item.get("keyId"), 200) or (
            as_text(key.get("id"), 200) if isinstance(key, dict) else None
        )
        if wa_id is None:
            raise WebhookError("invalid_data", "A receipt has no `keyId`.")
        status = map_status(item.get("status"), "")
        if not status:
            continue  # poll updates and unknown statuses carry no delivery information
        receipts.append(Receipt(wa_id, as_flag(item.get("fromMe")), status))
    return Batch(receipts=tuple(receipts))


def parse_deletes(data: Any) -> Batch:
    receipts = []
    for item in as_objects(data, "messages.delete data"):
        key = item.get("key") if isinstance(item.get("key"), dict) else item
        assert isinstance(key, dict)
        wa_id = _key_id(key, "A delete has no message `id`.")
        receipts.append(Receipt(wa_id, as_flag(key.get("fromMe")), "deleted"))
    return Batch(receipts=tuple(receipts))


def parse_edit(data: Any) -> Batch:
    data = as_object(data, "messages.edited data")
    key = as_object(data.get("key"), "the edited message `key`")
    wa_id = _key_id(key, "The edited message key has no `id`.")
    edited = data.get("editedMessage")
    text = _message_text(edited) if isinstance(edited, dict) else None
    if text is None and isinstance(edited, dict) and isinstance(edited.get("message"), dict):
        text = _message_text(edited["message"])
    return Batch(
        edits=(Edit(wa_id, as_flag(key.get("fromMe")), text, as_int(data.get("timestampMs"))),)
    )
