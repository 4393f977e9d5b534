"""The backup of one instance's contacts, conversations and messages (CONTRACT §3
`GET /api/whatsapp/export`), as a stream of JSON-ready dicts, one per NDJSON line.

Memory stays bounded whatever the size: every table is read in pages of `page_size` rows by
keyset pagination (each page is one query on one pooled connection, released before the page
is yielded), and nothing but the current page and the counts is kept.  Every query is scoped
by the instance name, so an instance's export holds only its own rows.  Secrets (the
instance's Evolution token) live in `whatsapp_instances`, which is never read here; the
messages' raw payloads are not exported either (MESSAGE_COLUMNS leaves them out).

Lines: a header `{"type": "export", "version": 1, "instance_name", "exported_at"}`, then
`{"type": "contact", "data": {...}}` for every contact, `{"type": "conversation", "data": ...}`
for every conversation (ConversationView plus `deleted_at`: a deleted chat's messages are still
kept, so the chat is exported too), `{"type": "message", "data": MessageView}` for every message
(conversation by conversation, oldest first), then `{"type": "end", "counts": {...}}`: a file
without that last line is incomplete.  The views sit under `data`, as in the socket's frames
(CONTRACT §4): MessageView has a `type` of its own (text, image, ...).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime
from typing import Any

from .views import CONVERSATION_SELECT, MESSAGE_COLUMNS, conversation_view, message_view

EXPORT_VERSION = 1
PAGE_SIZE = 500
# Below every UUID: the keyset start of the conversations.
_FIRST_UUID = uuid.UUID(int=0)

_CONTACTS = (
    "SELECT id, jid, lid, phone_number, push_name, profile_pic_url, created_at, updated_at"
    " FROM contacts WHERE instance_name = $1 AND id > $2 ORDER BY id LIMIT $3"
)
_CONVERSATIONS = (
    CONVERSATION_SELECT + "WHERE c.instance_name = $1 AND c.id > $2 ORDER BY c.id LIMIT $3"
)
_CONVERSATION_IDS = (
    "SELECT id FROM conversations WHERE instance_name = $1 AND id > $2 ORDER BY id LIMIT $3"
)
# (sent_at, seq) is unique (seq is a sequence) and walks idx_messages_conversation_recent.
_FIRST_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1"
    " AND m.instance_name = $2 ORDER BY m.sent_at, m.seq LIMIT $3"
)
_NEXT_MESSAGES = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1"
    " AND m.instance_name = $2 AND (m.sent_at, m.seq) > ($3, $4)"
    " ORDER BY m.sent_at, m.seq LIMIT $5"
)


def encode_line(line: dict[str, Any]) -> bytes:
    """One NDJSON line, as `GET /api/whatsapp/export` sends it and the backups store it."""
    return (
        json.dumps(line, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
    ).encode()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def contact_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "remote_jid": row["jid"],
        "lid": row["lid"],
        "phone_number": row["phone_number"],
        "push_name": row["push_name"],
        "profile_pic_url": row["profile_pic_url"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


def export_conversation_view(row: Any) -> dict[str, Any]:
    return {**conversation_view(row), "deleted_at": _iso(row["deleted_at"])}


async def _by_id(
    db: Any, query: str, instance: str, first: Any, page_size: int
) -> AsyncIterator[Any]:
    """Every row of `query` for `instance`, `page_size` at a time, in `id` order after `first`
    (one query per page: memory stays bounded whatever the size)."""
    after = first
    while True:
        rows = await db.fetch(query, instance, after, page_size)
        for row in rows:
            yield row
        if len(rows) < page_size:
            return
        after = rows[-1]["id"]


async def export_lines(
    db: Any, instance: str, exported_at: datetime, *, page_size: int = PAGE_SIZE
) -> AsyncGenerator[dict[str, Any], None]:
    """The export of `instance`, line by line (see the module's docstring)."""
    yield {
        "type": "export",
        "version": EXPORT_VERSION,
        "instance_name": instance,
        "exported_at": _iso(exported_at),
    }
    counts = {"contacts": 0, "conversations": 0, "messages": 0}

    async for row in _by_id(db, _CONTACTS, instance, 0, page_size):
        counts["contacts"] += 1
        yield {"type": "contact", "data": contact_view(row)}
    async for row in _by_id(db, _CONVERSATIONS, instance, _FIRST_UUID, page_size):
        counts["conversations"] += 1
        yield {"type": "conversation", "data": export_conversation_view(row)}
    async for id_row in _by_id(db, _CONVERSATION_IDS, instance, _FIRST_UUID, page_size):
        conversation_id = id_row["id"]
        rows = await db.fetch(_FIRST_MESSAGES, conversation_id, instance, page_size)
        while True:
            for row in rows:
                counts["messages"] += 1
                yield {"type": "message", "data": message_view(row)}
            if len(rows) < page_size:
                break
            rows = await db.fetch(
                _NEXT_MESSAGES,
                conversation_id,
                instance,
                rows[-1]["sent_at"],
                rows[-1]["seq"],
                page_size,
            )

    yield {"type": "end", "counts": counts}
