"""Parsing the `data` of Evolution's message, contact, chat, group and presence events into
plain records (evolution-api-v2.md §4).  Pure: no I/O.

Every parser raises only `WebhookError` on a payload it cannot use.  Shapes vary across
Evolution versions (object or array, `remoteJid` or `id`, LID or phone jids); the parsers
accept all documented variants and normalise jids so that one person is one jid:
the phone jid when it is known, the `@lid` otherwise (merged later when the pair is learned).

Layout: `records` holds the records and the value/jid helpers, `messages` the message,
receipt, delete and edit parsers, `chats` the contact, chat, presence and group parsers;
this module routes an event to its parser (`parse_batch`).
"""

from __future__ import annotations

from typing import Any

from .chats import (
    parse_chat_deletes,
    parse_chats,
    parse_contacts,
    parse_groups,
    parse_participants,
    parse_presence,
)
from .messages import parse_deletes, parse_edit, parse_message, parse_messages, parse_receipts
from .records import (
    GROUP_SERVER,
    LID_SERVER,
    STATUS_RANK,
    USER_SERVER,
    Alias,
    Batch,
    ChatRecord,
    ContactRecord,
    Edit,
    GroupRecord,
    MessageRecord,
    Presence,
    Receipt,
    as_object,
    clean_jid,
    is_lid,
    is_phone_jid,
    map_status,
    phone_of,
    resolve,
)

__all__ = [
    "GROUP_SERVER",
    "LID_SERVER",
    "MESSAGE_EVENTS",
    "STATUS_RANK",
    "USER_SERVER",
    "Alias",
    "Batch",
    "ChatRecord",
    "ContactRecord",
    "Edit",
    "GroupRecord",
    "MessageRecord",
    "Presence",
    "Receipt",
    "clean_jid",
    "is_lid",
    "is_phone_jid",
    "map_status",
    "parse_batch",
    "parse_chat_deletes",
    "parse_chats",
    "parse_contacts",
    "parse_deletes",
    "parse_edit",
    "parse_groups",
    "parse_message",
    "parse_messages",
    "parse_participants",
    "parse_presence",
    "parse_receipts",
    "phone_of",
    "resolve",
]

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
            return parse_messages([as_object(data, f"{event} data")], live=True)
        case "messages.set":
            return parse_messages(data if isinstance(data, list) else [data], live=False)
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
