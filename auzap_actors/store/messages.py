"""Applying parsed webhook records to contacts, conversations and messages.

Only the owning instance actor writes an instance's rows, one batch at a time inside the
transaction that also marks the inbox row applied, so read-then-write here is race-free; the
unique keys still make a duplicate impossible if that rule were ever broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.payloads import STATUS_RANK, Batch, ContactRecord, Edit, MessageRecord, Receipt
from .conversations import ConversationWriter, timestamp_or_now
from .views import MESSAGE_COLUMNS, message_view

# Statements keyed by (instance, WhatsApp id) that run for every message, receipt and edit;
# named so that tests/test_merge_indexes.py can EXPLAIN exactly these.
# ($1 instance, $2 WhatsApp id, $3 from_me)
FIND_MESSAGE = (
    "SELECT id, status_rank FROM messages"
    " WHERE instance_name = $1 AND wa_message_id = $2 AND from_me = $3"
)
MESSAGE_EXISTS = (
    "SELECT true FROM messages WHERE instance_name = $1 AND wa_message_id = $2 AND from_me = $3"
)
TAKE_PATCHES = (
    "DELETE FROM message_patches WHERE instance_name = $1 AND wa_message_id = $2"
    " AND (from_me = $3 OR status IS NULL)"
    " RETURNING from_me, status, edited_text, edited_at"
)
# (... $4 status, $5 its rank)
ADVANCE_STATUS = (
    "WITH target AS (SELECT id, status_rank FROM messages WHERE instance_name = $1"
    " AND wa_message_id = $2 AND from_me = $3)"
    " UPDATE messages m SET status = $4, status_rank = $5 FROM target"
    " WHERE m.id = target.id AND target.status_rank < $5 RETURNING m.id"
)
# (... $4 text, $5 edited at)
EDIT_MESSAGE = (
    "WITH target AS (SELECT id FROM messages WHERE instance_name = $1"
    " AND wa_message_id = $2 ORDER BY (from_me = $3) DESC LIMIT 1)"
    " UPDATE messages m SET text = $4, edited_at = $5 FROM target WHERE m.id = target.id"
    " AND (m.edited_at IS NULL OR m.edited_at <= $5) RETURNING m.id"
)
# ($1 instance, $2 WhatsApp id)
MESSAGE_KNOWN = "SELECT true FROM messages WHERE instance_name = $1 AND wa_message_id = $2 LIMIT 1"


@dataclass(slots=True)
class Applied:
    """What a batch changed that browsers must hear about (published after commit)."""

    new_messages: list[dict[str, Any]] = field(default_factory=list)
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    presences: list[dict[str, Any]] = field(default_factory=list)
    # Messages whose text changed (an edit); with the ones a receipt marked deleted, they are
    # loaded as `updated_messages` (MessageView) before the commit: `message_update` frames.
    edited: list[str] = field(default_factory=list)
    updated_messages: list[dict[str, Any]] = field(default_factory=list)

    def updated_ids(self) -> list[str]:
        """The messages edited or deleted, each once, in the order they changed."""
        deleted = [c["message_id"] for c in self.status_changes if c["status"] == "deleted"]
        return list(dict.fromkeys(self.edited + deleted))

    async def load_updates(self, conn: Any, instance: str) -> None:
        """Load what `message_update` frames carry, on the transaction's connection."""
        ids = self.updated_ids()
        if ids:
            self.updated_messages = await views_by_id(conn, instance, ids)


class BatchWriter(ConversationWriter):
    """Applies one Batch for one instance on one connection (inside a transaction)."""

    def __init__(self, conn: Any, instance_name: str) -> None:
        super().__init__(conn, instance_name)
        self.applied = Applied()

    async def apply(self, batch: Batch) -> Applied:
        for alias in batch.aliases:
            await self.learn_alias(alias)
        for contact in batch.contacts:
            await self.upsert_contact(contact)
        for chat in batch.chats:
            await self.upsert_chat(chat)
        for group in batch.groups:
            await self.upsert_group(group)
        for message in batch.messages:
            await self.store_message(message, live=batch.live)
        for receipt in batch.receipts:
            await self.apply_receipt(receipt)
        for edit in batch.edits:
            await self.apply_edit(edit)
        for jid in batch.deleted_chats:
            await self.delete_chat(jid)
        for presence in batch.presences:
            self.applied.presences.append(
                {
                    "remote_jid": await self.canonical(presence.chat_jid),
                    "participant": await self.canonical(presence.participant_jid),
                    "presence": presence.presence,
                    "last_seen": presence.last_seen,
                }
            )
        return self.applied

    # ---- messages -----------------------------------------------------------------------

    async def store_message(self, record: MessageRecord, *, live: bool) -> None:
        chat = await self.canonical(record.chat_jid)
        sender = await self.canonical(record.sender_jid) if record.sender_jid else None
        contact_id = None
        if not record.is_group:
            contact_id = await self.upsert_contact(
                ContactRecord(chat, push_name=None if record.from_me else record.push_name)
            )
        conversation_id = await self.conversation(
            chat, is_group=record.is_group, contact_id=contact_id
        )
        existing = await self.conn.fetchrow(
            FIND_MESSAGE,
            self.instance,
            record.wa_id,
            record.from_me,
        )
        if existing is not None:
            # A re-delivery, or the echo of a message we sent: one message, status forward.
            await self._advance(record.wa_id, record.from_me, record.status)
            return
        row = await self.conn.fetchrow(
            "INSERT INTO messages (instance_name, conversation_id, remote_jid, wa_message_id,"
            " from_me, sender_jid, push_name, type, text, status, status_rank,"
            " quoted_wa_message_id, sent_at, raw)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (instance_name, wa_message_id, from_me) DO NOTHING RETURNING id",
            self.instance,
            conversation_id,
            chat,
            record.wa_id,
            record.from_me,
            sender,
            record.push_name,
            record.type,
            record.text,
            record.status,
            STATUS_RANK[record.status],
            record.quoted_wa_id,
            timestamp_or_now(record.timestamp),
            record.raw,
        )
        if row is None:
            return
        await self._fold_patch(record.wa_id, record.from_me)
        await self.conn.execute(
            "UPDATE conversations SET last_message_at = greatest(last_message_at, $2),"
            " unread_count = unread_count + $3, updated_at = now(),"
            # a deleted chat comes back only with a message newer than its deletion
            " deleted_at = CASE WHEN deleted_at < $2 THEN NULL ELSE deleted_at END"
            " WHERE id = $1",
            conversation_id,
            timestamp_or_now(record.timestamp),
            1 if live and not record.from_me else 0,
        )
        if live:
            view = await self.conn.fetchrow(
                f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1", row["id"]
            )
            self.applied.new_messages.append(message_view(view))

    async def _fold_patch(self, wa_id: str, from_me: bool) -> None:
        """Apply what arrived before this message: receipts of its direction, and edits keyed
        from either side (see apply_edit)."""
        patches = await self.conn.fetch(
            TAKE_PATCHES,
            self.instance,
            wa_id,
            from_me,
        )
        await self.apply_patches(wa_id, from_me, patches)

    async def apply_patches(self, wa_id: str, from_me: bool, patches: list[Any]) -> None:
        """Fold patches taken off `message_patches` into the message they were waiting for."""
        for patch in patches:
            if patch["status"] and patch["from_me"] == from_me:
                await self._advance(wa_id, from_me, patch["status"], announce=False)
        edits = [p for p in patches if p["edited_at"] is not None]
        if edits:
            latest = max(edits, key=lambda p: p["edited_at"])
            await self.conn.execute(
                "UPDATE messages SET text = $4, edited_at = $5 WHERE instance_name = $1"
                " AND wa_message_id = $2 AND from_me = $3",
                self.instance,
                wa_id,
                from_me,
                latest["edited_text"],
                latest["edited_at"],
            )

    async def _advance(
        self, wa_id: str, from_me: bool, status: str, *, announce: bool = True
    ) -> bool:
        """Move a message's status forward (never back); False if the message is unknown."""
        row = await self.conn.fetchrow(
            ADVANCE_STATUS,
            self.instance,
            wa_id,
            from_me,
            status,
            STATUS_RANK[status],
        )
        if row is not None:
            if announce:
                self.applied.status_changes.append(
                    {"message_id": str(row["id"]), "wa_message_id": wa_id, "status": status}
                )
            return True
        exists = await self.conn.fetchval(
            MESSAGE_EXISTS,
            self.instance,
            wa_id,
            from_me,
        )
        return bool(exists)

    async def apply_receipt(self, receipt: Receipt) -> None:
        if await self._advance(receipt.wa_id, receipt.from_me, receipt.status):
            return
        await self.conn.execute(
            "INSERT INTO message_patches (instance_name, wa_message_id, from_me, status,"
            " status_rank) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (instance_name, wa_message_id, from_me) DO UPDATE SET"
            " status = CASE WHEN EXCLUDED.status_rank > message_patches.status_rank"
            " THEN EXCLUDED.status ELSE message_patches.status END,"
            " status_rank = greatest(message_patches.status_rank, EXCLUDED.status_rank)",
            self.instance,
            receipt.wa_id,
            receipt.from_me,
            receipt.status,
            STATUS_RANK[receipt.status],
        )

    async def apply_edit(self, edit: Edit) -> None:
        edited_at = (
            datetime.fromtimestamp(edit.edited_at_ms / 1000, UTC)
            if edit.edited_at_ms
            else datetime.now(UTC)
        )
        # The sender's own device keys an edit fromMe=true; ours keyed it fromMe=false: match
        # the same direction first, else the one message with that id.
        updated = await self.conn.fetchval(
            EDIT_MESSAGE,
            self.instance,
            edit.wa_id,
            edit.from_me,
            edit.text,
            edited_at,
        )
        if updated is not None:
            self.applied.edited.append(str(updated))
            return
        known = await self.conn.fetchval(
            MESSAGE_KNOWN,
            self.instance,
            edit.wa_id,
        )
        if known:
            return  # an older edit than the one we have
        await self.conn.execute(
            "INSERT INTO message_patches (instance_name, wa_message_id, from_me, edited_text,"
            " edited_at) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (instance_name, wa_message_id, from_me) DO UPDATE SET"
            " edited_text = EXCLUDED.edited_text, edited_at = EXCLUDED.edited_at"
            " WHERE message_patches.edited_at IS NULL"
            " OR message_patches.edited_at <= EXCLUDED.edited_at",
            self.instance,
            edit.wa_id,
            edit.from_me,
            edit.text,
            edited_at,
        )


async def views_by_id(conn: Any, instance: str, ids: list[str]) -> list[dict[str, Any]]:
    """MessageViews of an instance's messages, in arrival order."""
    rows = await conn.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.instance_name = $1"
        " AND m.id = ANY($2::uuid[]) ORDER BY m.seq",
        instance,
        ids,
    )
    return [message_view(row) for row in rows]


async def find_message(
    conn: Any, instance: str, wa_id: str, from_me: bool
) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.instance_name = $1"
        " AND m.wa_message_id = $2 AND m.from_me = $3",
        instance,
        wa_id,
        from_me,
    )
    return message_view(row) if row else None


async def purge(conn: Any, instance: str) -> None:
    """Forget an instance's people and messages (the user asked: DELETE ...?purge=true)."""
    for table in ("messages", "conversations", "contacts", "jid_aliases", "message_patches"):
        await conn.execute(f"DELETE FROM {table} WHERE instance_name = $1", instance)
