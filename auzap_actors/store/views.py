"""Row -> JSON views of CONTRACT §3 (MessageView, ConversationView), and the read queries of
the user API.  Every query is scoped by instance name, which is derived from the caller's
user id: a user can only ever read their own rows."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

from ..core.errors import BadCursor

MESSAGE_COLUMNS = (
    "m.id, m.seq, m.conversation_id, m.wa_message_id, m.from_me, m.remote_jid, m.sender_jid,"
    " m.push_name, m.type, m.text, m.status, m.sent_at, m.auto_reply"
)


_MESSAGE_FIELDS = [column.strip()[2:] for column in MESSAGE_COLUMNS.split(",")]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def message_view(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "conversation_id": str(row["conversation_id"]),
        "wa_message_id": row["wa_message_id"],
        "from_me": row["from_me"],
        "remote_jid": row["remote_jid"],
        "sender_jid": row["sender_jid"],
        "push_name": row["push_name"],
        "type": row["type"],
        "text": row["text"],
        "status": row["status"],
        "timestamp": _iso(row["sent_at"]),
        "auto_reply": row["auto_reply"],
    }


def encode_cursor(when: datetime, tiebreak: Any) -> str:
    raw = json.dumps([when.isoformat(), str(tiebreak)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, tie-break) position a page ended at; BadCursor if it is not ours."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        when, tiebreak = json.loads(base64.urlsafe_b64decode(padded.encode()))
        parsed = datetime.fromisoformat(when)
        if parsed.tzinfo is None or not isinstance(tiebreak, str):
            raise ValueError(cursor)
        return parsed, tiebreak
    except (ValueError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
        raise BadCursor("The `before` cursor is not one this API issued.") from None


async def list_messages(
    db: Any, instance: str, conversation_id: uuid.UUID, limit: int, before: str | None
) -> tuple[list[dict[str, Any]], str | None] | None:
    """Newest first; None when the conversation is not this instance's."""
    owned = await db.fetchval(
        "SELECT true FROM conversations WHERE id = $1 AND instance_name = $2",
        conversation_id,
        instance,
    )
    if not owned:
        return None
    if before:
        when, tiebreak = decode_cursor(before)
        if not tiebreak.isdigit():
            raise BadCursor("The `before` cursor is not one this API issued.")
        rows = await db.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1"
            " AND m.instance_name = $2 AND (m.sent_at, m.seq) < ($3, $4)"
            " ORDER BY m.sent_at DESC, m.seq DESC LIMIT $5",
            conversation_id,
            instance,
            when,
            int(tiebreak),
            limit + 1,
        )
    else:
        rows = await db.fetch(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = $1"
            " AND m.instance_name = $2 ORDER BY m.sent_at DESC, m.seq DESC LIMIT $3",
            conversation_id,
            instance,
            limit + 1,
        )
    page = rows[:limit]
    cursor = encode_cursor(page[-1]["sent_at"], page[-1]["seq"]) if len(rows) > limit else None
    return [message_view(r) for r in page], cursor


_LAST_COLUMNS = ", ".join(
    f"{column.strip()} AS last_{column.strip()[2:]}" for column in MESSAGE_COLUMNS.split(",")
)
# The conversation with its contact and its last message; callers add WHERE and ORDER BY.
CONVERSATION_SELECT = f"""
SELECT c.id, c.remote_jid, c.is_group, c.title, c.last_message_at, c.unread_count,
       c.deleted_at,
       coalesce(c.last_message_at, '-infinity') AS sort_key,
       k.id AS contact_id, k.jid AS contact_jid, k.phone_number, k.push_name AS contact_name,
       k.profile_pic_url, last.*
FROM conversations c
LEFT JOIN contacts k ON k.id = c.contact_id
LEFT JOIN LATERAL (
    SELECT {_LAST_COLUMNS}
    FROM messages m WHERE m.conversation_id = c.id ORDER BY m.sent_at DESC, m.seq DESC LIMIT 1
) last ON true
"""
_CONVERSATION_QUERY = CONVERSATION_SELECT + "WHERE c.instance_name = $1 AND c.deleted_at IS NULL\n"


def conversation_view(row: Any) -> dict[str, Any]:
    last = None
    if row["last_id"] is not None:
        fields = dict(row.items())
        last = message_view({name: fields[f"last_{name}"] for name in _MESSAGE_FIELDS})
    contact = None
    if row["contact_id"] is not None:
        contact = {
            "id": str(row["contact_id"]),
            "remote_jid": row["contact_jid"],
            "phone_number": row["phone_number"],
            "push_name": row["contact_name"],
            "profile_pic_url": row["profile_pic_url"],
        }
    return {
        "id": str(row["id"]),
        "remote_jid": row["remote_jid"],
        "is_group": row["is_group"],
        "title": row["title"] or (contact or {}).get("push_name"),
        "contact": contact,
        "last_message_at": _iso(row["last_message_at"]),
        "last_message": last,
        "unread_count": row["unread_count"],
    }


async def list_conversations(
    db: Any, instance: str, limit: int, before: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    order = " ORDER BY sort_key DESC, c.id DESC"
    if before:
        when, tiebreak = decode_cursor(before)
        try:
            row_id = uuid.UUID(tiebreak)
        except ValueError:
            raise BadCursor("The `before` cursor is not one this API issued.") from None
        rows = await db.fetch(
            _CONVERSATION_QUERY
            + " AND (coalesce(c.last_message_at, '-infinity'), c.id) < ($2, $3)"
            + order
            + " LIMIT $4",
            instance,
            when,
            row_id,
            limit + 1,
        )
    else:
        rows = await db.fetch(_CONVERSATION_QUERY + order + " LIMIT $2", instance, limit + 1)
    page = rows[:limit]
    cursor = None
    if len(rows) > limit:
        cursor = encode_cursor(page[-1]["sort_key"], page[-1]["id"])
    return [conversation_view(r) for r in page], cursor
