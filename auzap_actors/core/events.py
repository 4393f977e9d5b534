"""The vocabulary of Evolution API v2 webhooks, once (evolution-api-v2.md §2.10, §3.1): the
dotted event names it sends, the upper-snake keys its webhook config lists, and the URL slugs
of its `byEvents` mode.  Used by our parser, our Evolution client and the simulator alike.
"""

from __future__ import annotations

# The dotted `event` values Evolution v2 sends.
EVENT_NAMES: frozenset[str] = frozenset(
    {
        "application.startup", "instance.create", "instance.delete", "qrcode.updated",
        "connection.update", "status.instance", "messages.set", "messages.upsert",
        "messages.edited", "messages.update", "messages.delete", "send.message",
        "send.message.update", "contacts.set", "contacts.upsert", "contacts.update",
        "presence.update", "chats.set", "chats.upsert", "chats.update", "chats.delete",
        "groups.upsert", "groups.update", "group-participants.update", "call", "labels.edit",
        "labels.association", "typebot.start", "typebot.change-status", "logout.instance",
        "remove.instance", "messaging-history.set",
    }
)  # fmt: skip

# EventController.events of v2.3.6, in source order: what a webhook config may list.
# Anything else in a webhook `events` list is rejected with a 400 by the real server.
ALLOWED_WEBHOOK_EVENTS: tuple[str, ...] = (
    "APPLICATION_STARTUP", "QRCODE_UPDATED", "MESSAGES_SET", "MESSAGES_UPSERT",
    "MESSAGES_EDITED", "MESSAGES_UPDATE", "MESSAGES_DELETE", "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE", "CONTACTS_SET", "CONTACTS_UPSERT", "CONTACTS_UPDATE",
    "PRESENCE_UPDATE", "CHATS_SET", "CHATS_UPSERT", "CHATS_UPDATE", "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",  # sic: the real list has this typo, so groups.update never matches it
    "GROUP_PARTICIPANTS_UPDATE", "CONNECTION_UPDATE", "LABELS_EDIT", "LABELS_ASSOCIATION",
    "CALL", "TYPEBOT_START", "TYPEBOT_CHANGE_STATUS", "REMOVE_INSTANCE", "LOGOUT_INSTANCE",
    "INSTANCE_CREATE", "INSTANCE_DELETE", "STATUS_INSTANCE",
)  # fmt: skip

# What this service subscribes to: the allowed list minus events the Baileys channel never
# emits (startup) and the Typebot integration's.
WEBHOOK_EVENTS: tuple[str, ...] = tuple(
    name
    for name in ALLOWED_WEBHOOK_EVENTS
    if name not in {"APPLICATION_STARTUP", "TYPEBOT_START", "TYPEBOT_CHANGE_STATUS"}
)


def event_key(event: str) -> str:
    """Evolution's own filter key: `messages.upsert` -> `MESSAGES_UPSERT`."""
    return event.replace(".", "_").replace("-", "_").upper()


def event_slug(event: str) -> str:
    """The `byEvents` URL suffix: `messages.upsert` -> `messages-upsert`."""
    return event_key(event).lower().replace("_", "-")


_BY_KEY = {event_key(name): name for name in EVENT_NAMES}
_BY_SLUG = {event_slug(name): name for name in EVENT_NAMES}
# The GROUP_UPDATE typo above, read back.
_BY_KEY["GROUP_UPDATE"] = "groups.update"
_BY_SLUG["group-update"] = "groups.update"


def normalize_event(name: str) -> str:
    """Dotted form of an event name given dotted, upper-snake or as a by-events slug; an
    unknown name comes back lower-cased (kept and stored as unhandled)."""
    cleaned = name.strip()
    if cleaned in EVENT_NAMES:
        return cleaned
    lowered = cleaned.lower()
    if lowered in EVENT_NAMES:
        return lowered
    return _BY_KEY.get(cleaned.upper()) or _BY_SLUG.get(lowered) or lowered
