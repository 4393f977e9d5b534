"""The `auto_replies` table: one row per decision about an incoming message (README "AI
auto-reply").  Only the instance's actor writes its rows; every statement is scoped by
instance name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core.auto_reply import ChatFacts

# Decisions that count against the limits (skipped and failed ones sent nothing).
COUNTED = ("decided", "sending", "sent")


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass(frozen=True, slots=True)
class ReplyRow:
    id: int
    trigger_wa_id: str
    chat_jid: str
    state: str
    answers: int
    due_at: float
    decided_at: float
    send_started_at: float | None
    reply_text: str | None


_COLUMNS = (
    "id, trigger_wa_id, chat_jid, state, answers, extract(epoch FROM due_at)::float8 AS due_at,"
    " extract(epoch FROM decided_at)::float8 AS decided_at,"
    " extract(epoch FROM send_started_at)::float8 AS send_started_at, reply_text"
)


def _row(row: Any) -> ReplyRow:
    return ReplyRow(**dict(row.items()))


async def chat_facts(
    conn: Any, instance: str, chat_jid: str, now: float, *, human_pause: bool
) -> ChatFacts:
    """The chat's replies in the last hour, its reply still waiting, and (when the instance
    pauses for humans) when our side last wrote there without auto-reply."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE state = ANY($4::text[]) AND decided_at > $3) AS hour,"
        " (array_agg(id ORDER BY id DESC) FILTER (WHERE state = 'decided'))[1] AS open_id,"
        " extract(epoch FROM min(decided_at) FILTER (WHERE state = 'decided'))::float8 AS open_at"
        " FROM auto_replies WHERE instance_name = $1 AND chat_jid = $2"
        " AND (decided_at > $3 OR state = 'decided')",
        instance,
        chat_jid,
        _ts(now) - timedelta(hours=1),
        list(COUNTED),
    )
    last_human = None
    if human_pause:
        last_human = await conn.fetchval(
            "SELECT extract(epoch FROM max(m.created_at))::float8 FROM messages m"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.instance_name = $1 AND c.remote_jid = $2 AND m.from_me AND NOT m.auto_reply",
            instance,
            chat_jid,
        )
    return ChatFacts(
        replies_last_hour=int(row["hour"]),
        open_reply=row["open_id"],
        open_reply_first_at=row["open_at"],
        last_human_at=last_human,
    )


async def replies_last_day(conn: Any, instance: str, now: float) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM auto_replies WHERE instance_name = $1 AND decided_at > $2"
        " AND state = ANY($3::text[])",
        instance,
        _ts(now) - timedelta(days=1),
        list(COUNTED),
    )
    return int(count)


async def record(
    conn: Any,
    instance: str,
    trigger_wa_id: str,
    chat_jid: str,
    due_at: float,
    now: float,
    answers: int = 1,
) -> int | None:
    """A decision to reply (to `answers` messages); None when one exists for that message
    already (a replay)."""
    reply_id: int | None = await conn.fetchval(
        "INSERT INTO auto_replies (instance_name, trigger_wa_id, chat_jid, state, due_at,"
        " decided_at, answers) VALUES ($1, $2, $3, 'decided', $4, $5, $6)"
        " ON CONFLICT (instance_name, trigger_wa_id) DO NOTHING RETURNING id",
        instance,
        trigger_wa_id,
        chat_jid,
        _ts(due_at),
        _ts(now),
        answers,
    )
    return reply_id


async def skip(
    conn: Any, instance: str, trigger_wa_id: str, chat_jid: str, reason: str, now: float
) -> bool:
    """A message that gets no reply, and why; False when it was decided already."""
    done = await conn.fetchval(
        "INSERT INTO auto_replies (instance_name, trigger_wa_id, chat_jid, state, reason,"
        " due_at, decided_at, settled_at) VALUES ($1, $2, $3, 'skipped', $4, $5, $5, $5)"
        " ON CONFLICT (instance_name, trigger_wa_id) DO NOTHING RETURNING true",
        instance,
        trigger_wa_id,
        chat_jid,
        reason,
        _ts(now),
    )
    return bool(done)


async def extend(conn: Any, instance: str, reply_id: int, due_at: float) -> bool:
    """One more message folded into a waiting reply."""
    done = await conn.fetchval(
        "UPDATE auto_replies SET due_at = greatest(due_at, $3), answers = answers + 1"
        " WHERE instance_name = $1 AND id = $2 AND state = 'decided' RETURNING true",
        instance,
        reply_id,
        _ts(due_at),
    )
    return bool(done)


async def open_replies(db: Any, instance: str) -> list[ReplyRow]:
    """Replies not settled yet (decided, or sending when a crash interrupted the send)."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM auto_replies WHERE instance_name = $1"
        " AND state IN ('decided', 'sending') ORDER BY due_at, id",
        instance,
    )
    return [_row(r) for r in rows]


async def open_reply_instance_names(db: Any) -> set[str]:
    """The instances with replies not settled (one query at boot: only their actors look for
    them as they start)."""
    rows = await db.fetch(
        "SELECT DISTINCT instance_name FROM auto_replies WHERE state IN ('decided', 'sending')"
    )
    return {r["instance_name"] for r in rows}


async def find(db: Any, instance: str, reply_id: int) -> ReplyRow | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM auto_replies WHERE instance_name = $1 AND id = $2",
        instance,
        reply_id,
    )
    return _row(row) if row else None


async def mark_sending(db: Any, instance: str, reply_id: int, text: str, now: float) -> None:
    """Written (and committed) before sendText is called: a crash after this point is
    resumed by looking for the send's echo, never by sending blindly again."""
    await db.execute(
        "UPDATE auto_replies SET state = 'sending', reply_text = $3, send_started_at = $4"
        " WHERE instance_name = $1 AND id = $2",
        instance,
        reply_id,
        text,
        _ts(now),
    )


async def mark_sent(conn: Any, instance: str, reply_id: int, reply_wa_id: str, now: float) -> None:
    await conn.execute(
        "UPDATE auto_replies SET state = 'sent', reply_wa_id = $3, settled_at = $4, reason = NULL"
        " WHERE instance_name = $1 AND id = $2",
        instance,
        reply_id,
        reply_wa_id,
        _ts(now),
    )
    # The stored message is the auto-reply (MessageView.auto_reply).
    await conn.execute(
        "UPDATE messages SET auto_reply = true WHERE instance_name = $1"
        " AND wa_message_id = $2 AND from_me",
        instance,
        reply_wa_id,
    )


async def settle(
    db: Any, instance: str, reply_id: int, state: str, reason: str, now: float
) -> None:
    await db.execute(
        "UPDATE auto_replies SET state = $3, reason = $4, settled_at = $5"
        " WHERE instance_name = $1 AND id = $2 AND state IN ('decided', 'sending')",
        instance,
        reply_id,
        state,
        reason[:500],
        _ts(now),
    )


async def find_echo(db: Any, instance: str, reply: ReplyRow) -> str | None:
    """The WhatsApp id of our own message carrying this reply's text in its chat, stored
    after the send began and claimed by no other reply: Evolution emits `send.message`
    for every message it sends, so a send that left before a crash shows up here."""
    since = _ts((reply.send_started_at or reply.decided_at) - 120)
    found: str | None = await db.fetchval(
        "SELECT m.wa_message_id FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.instance_name = $1 AND c.remote_jid = $2 AND m.from_me AND m.text = $3"
        " AND m.created_at >= $4 AND NOT EXISTS (SELECT 1 FROM auto_replies a"
        " WHERE a.instance_name = $1 AND a.reply_wa_id = m.wa_message_id)"
        " ORDER BY m.created_at LIMIT 1",
        instance,
        reply.chat_jid,
        reply.reply_text,
        since,
    )
    return found


async def context(db: Any, instance: str, chat_jid: str, limit: int) -> list[dict[str, Any]]:
    """The chat's latest texts, oldest first: what the responder reads."""
    rows = await db.fetch(
        "SELECT m.from_me, m.text, m.auto_reply, m.push_name FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.instance_name = $1 AND c.remote_jid = $2 AND m.text IS NOT NULL"
        " AND m.status <> 'deleted' ORDER BY m.sent_at DESC, m.seq DESC LIMIT $3",
        instance,
        chat_jid,
        limit,
    )
    return [dict(r.items()) for r in reversed(rows)]


async def retire(conn: Any, instance: str, *, purge: bool) -> None:
    """The instance is deleted: its open decisions end unsent (a new instance of that name must
    not inherit them); a purge forgets the rows too."""
    if purge:
        await conn.execute("DELETE FROM auto_replies WHERE instance_name = $1", instance)
        return
    await conn.execute(
        "UPDATE auto_replies SET state = 'skipped', reason = 'instance deleted',"
        " settled_at = now() WHERE instance_name = $1 AND state IN ('decided', 'sending')",
        instance,
    )
