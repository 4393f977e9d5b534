"""Webhook event names of Evolution API v2 (facts §2.10 and §3.1).

Shared by the client (what the service subscribes to) and the simulator (what it
accepts in ``/webhook/set`` and how it filters deliveries).
"""

from __future__ import annotations

# EventController.events of v2.3.6, in source order. Anything else in a webhook
# ``events`` list is rejected with a 400 by the real server.
ALLOWED_WEBHOOK_EVENTS: tuple[str, ...] = (
    "APPLICATION_STARTUP",
    "QRCODE_UPDATED",
    "MESSAGES_SET",
    "MESSAGES_UPSERT",
    "MESSAGES_EDITED",
    "MESSAGES_UPDATE",
    "MESSAGES_DELETE",
    "SEND_MESSAGE",
    "SEND_MESSAGE_UPDATE",
    "CONTACTS_SET",
    "CONTACTS_UPSERT",
    "CONTACTS_UPDATE",
    "PRESENCE_UPDATE",
    "CHATS_SET",
    "CHATS_UPSERT",
    "CHATS_UPDATE",
    "CHATS_DELETE",
    "GROUPS_UPSERT",
    "GROUP_UPDATE",  # sic: the real list has this typo, so groups.update never matches
    "GROUP_PARTICIPANTS_UPDATE",
    "CONNECTION_UPDATE",
    "LABELS_EDIT",
    "LABELS_ASSOCIATION",
    "CALL",
    "TYPEBOT_START",
    "TYPEBOT_CHANGE_STATUS",
    "REMOVE_INSTANCE",
    "LOGOUT_INSTANCE",
    "INSTANCE_CREATE",
    "INSTANCE_DELETE",
    "STATUS_INSTANCE",
)

# Everything the service subscribes to: the allowed list minus events that are
# never emitted by the Baileys channel (startup) or belong to the Typebot integration.
WEBHOOK_EVENTS: tuple[str, ...] = tuple(
    name
    for name in ALLOWED_WEBHOOK_EVENTS
    if name not in {"APPLICATION_STARTUP", "TYPEBOT_START", "TYPEBOT_CHANGE_STATUS"}
)


def event_key(event: str) -> str:
    """``messages.upsert`` -> ``MESSAGES_UPSERT``, the way Evolution filters deliveries."""
    return event.replace(".", "_").replace("-", "_").upper()


def event_slug(event: str) -> str:
    """``messages.upsert`` -> ``messages-upsert``, the path segment used with byEvents."""
    return event_key(event).lower().replace("_", "-")
