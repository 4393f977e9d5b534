"""Applying parsed webhook records to contacts, conversations and messages.

Only the owning instance actor writes an instance's rows, one batch at a time inside the
transaction that also marks the inbox row applied, so read-then-write here is race-free; the
unique keys still make a duplicate impossible if that rule were ever broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..core.payloads import (
    STATUS_RANK,
    Alias,
    Batch,
    ChatRecord,
    ContactRecord,
    Edit,
    GroupRecord,
    MessageRecord,
    Receipt,
    is_lid,
    phone_of,
)
from .views import MESSAGE_COLUMNS, message_view


@dataclass(slots=True)
class Applied:
    """What a batch changed that browsers must hear about (published after commit)."""

    new_messages: list[dict[str, Any]] = field(default_factory=list)
    status_changes: list[dict[str, Any]] = field(default_factory=list)
    presences: list[dict[str, Any]] = field(default_factory=list)


def _ts(seconds: int | None) -> datetime:
    if not seconds:
        return datetime.now(UTC)
    return datetime.fromtimestamp(seconds, UTC)


class BatchWriter:
    """Applies one Batch for one instance on one connection (inside a transaction)."""

    def __init__(self, conn: Any, instance_name: str) -> None:
        self.conn = conn
        self.instance = instance_name
        self._canonical: dict[str, str] = {}
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
            # A tombstone even for a chat we have not seen yet: its older messages arriving
            # later must not bring it back (only a message newer than the deletion does).
            deleted = await self.canonical(jid)
            await self.conn.execute(
                "INSERT INTO conversations (instance_name, remote_jid, is_group, deleted_at)"
                " VALUES ($1, $2, $3, now()) ON CONFLICT (instance_name, remote_jid)"
                " DO UPDATE SET deleted_at = now(), updated_at = now()",
                self.instance,
                deleted,
                deleted.endswith("@g.us"),
            )
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

    # ---- people -------------------------------------------------------------------------

    async def canonical(self, jid: str) -> str:
        """A @lid becomes its phone jid once the pair is known."""
        if not is_lid(jid):
            return jid
        if jid not in self._canonical:
            phone = await self.conn.fetchval(
                "SELECT phone_jid FROM jid_aliases WHERE instance_name = $1 AND lid = $2",
                self.instance,
                jid,
            )
            self._canonical[jid] = phone or jid
        return self._canonical[jid]

    async def learn_alias(self, alias: Alias) -> None:
        """Record a @lid/phone pair; fold everything filed under the @lid into the phone jid."""
        self._canonical[alias.lid] = alias.phone_jid
        new = await self.conn.fetchval(
            "INSERT INTO jid_aliases (instance_name, lid, phone_jid) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            self.instance,
            alias.lid,
            alias.phone_jid,
        )
        if new:
            await self._merge(alias)

    async def _merge(self, alias: Alias) -> None:
        conn, instance, lid, phone = self.conn, self.instance, alias.lid, alias.phone_jid
        lid_contact = await conn.fetchval(
            "SELECT id FROM contacts WHERE instance_name = $1 AND jid = $2", instance, lid
        )
        phone_contact = await conn.fetchval(
            "SELECT id FROM contacts WHERE instance_name = $1 AND jid = $2", instance, phone
        )
        if lid_contact and phone_contact:
            await conn.execute(
                "UPDATE conversations SET contact_id = $2 WHERE contact_id = $1",
                lid_contact,
                phone_contact,
            )
            await conn.execute(
                "UPDATE contacts p SET push_name = coalesce(p.push_name, l.push_name),"
                " profile_pic_url = coalesce(p.profile_pic_url, l.profile_pic_url)"
                " FROM contacts l WHERE p.id = $2 AND l.id = $1",
                lid_contact,
                phone_contact,
            )
            await conn.execute("DELETE FROM contacts WHERE id = $1", lid_contact)
        elif lid_contact:
            await conn.execute(
                "UPDATE contacts SET jid = $2, phone_number = $3, updated_at = now() WHERE id = $1",
                lid_contact,
                phone,
                phone_of(phone),
            )
        await conn.execute(
            "UPDATE contacts SET lid = $3 WHERE instance_name = $1 AND jid = $2"
            " AND lid IS DISTINCT FROM $3",
            instance,
            phone,
            lid,
        )
        lid_conv = await conn.fetchval(
            "SELECT id FROM conversations WHERE instance_name = $1 AND remote_jid = $2",
            instance,
            lid,
        )
        phone_conv = await conn.fetchval(
            "SELECT id FROM conversations WHERE instance_name = $1 AND remote_jid = $2",
            instance,
            phone,
        )
        if lid_conv and phone_conv:
            await conn.execute(
                "UPDATE messages SET conversation_id = $2, remote_jid = $3"
                " WHERE conversation_id = $1",
                lid_conv,
                phone_conv,
                phone,
            )
            await conn.execute(
                "UPDATE conversations p SET last_message_at = greatest(p.last_message_at,"
                " l.last_message_at), unread_count = p.unread_count + l.unread_count,"
                " title = coalesce(p.title, l.title) FROM conversations l"
                " WHERE p.id = $2 AND l.id = $1",
                lid_conv,
                phone_conv,
            )
            await conn.execute("DELETE FROM conversations WHERE id = $1", lid_conv)
        elif lid_conv:
            await conn.execute(
                "UPDATE conversations SET remote_jid = $2 WHERE id = $1", lid_conv, phone
            )
            await conn.execute(
                "UPDATE messages SET remote_jid = $2 WHERE conversation_id = $1", lid_conv, phone
            )
        await conn.execute(
            "UPDATE messages SET sender_jid = $3 WHERE instance_name = $1 AND sender_jid = $2",
            instance,
            lid,
            phone,
        )

    async def upsert_contact(self, contact: ContactRecord) -> int:
        jid = await self.canonical(contact.jid)
        # A phone contact carries its @lid when the pair is known (learned before or now).
        contact_id: int = await self.conn.fetchval(
            "INSERT INTO contacts (instance_name, jid, lid, phone_number, push_name,"
            " profile_pic_url) VALUES ($1, $2, coalesce($3, (SELECT lid FROM jid_aliases"
            " WHERE instance_name = $1 AND phone_jid = $2 LIMIT 1)), $4, $5, $6)"
            " ON CONFLICT (instance_name, jid) DO UPDATE SET"
            " lid = coalesce(contacts.lid, EXCLUDED.lid),"
            " push_name = coalesce(EXCLUDED.push_name, contacts.push_name),"
            " profile_pic_url = coalesce(EXCLUDED.profile_pic_url, contacts.profile_pic_url),"
            " updated_at = now() RETURNING id",
            self.instance,
            jid,
            jid if is_lid(jid) else None,
            phone_of(jid),
            contact.push_name,
            contact.profile_pic_url,
        )
        return contact_id

    # ---- conversations ------------------------------------------------------------------

    async def conversation(
        self,
        jid: str,
        *,
        is_group: bool,
        title: str | None = None,
        title_at: datetime | None = None,
        contact_id: int | None = None,
    ) -> Any:
        # Chat names only fill an empty title; group subjects replace it when newer, so the
        # final title does not depend on the order events arrive in.
        conversation_id = await self.conn.fetchval(
            "INSERT INTO conversations (instance_name, remote_jid, is_group, title, title_at,"
            " contact_id) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (instance_name, remote_jid) DO UPDATE SET"
            " title = CASE WHEN EXCLUDED.title_at IS NOT NULL AND (conversations.title_at IS NULL"
            " OR conversations.title_at < EXCLUDED.title_at) THEN EXCLUDED.title"
            " ELSE coalesce(conversations.title, EXCLUDED.title) END,"
            " title_at = greatest(conversations.title_at, EXCLUDED.title_at),"
            " contact_id = coalesce(conversations.contact_id, EXCLUDED.contact_id),"
            " updated_at = now() RETURNING id",
            self.instance,
            jid,
            is_group,
            title,
            title_at,
            contact_id,
        )
        return conversation_id

    async def upsert_chat(self, chat: ChatRecord) -> None:
        jid = await self.canonical(chat.jid)
        is_group = jid.endswith("@g.us")
        contact_id = None if is_group else await self.upsert_contact(ContactRecord(jid))
        conversation_id = await self.conversation(
            jid, is_group=is_group, title=chat.name, contact_id=contact_id
        )
        if chat.unread is not None:
            await self.conn.execute(
                "UPDATE conversations SET unread_count = $2 WHERE id = $1",
                conversation_id,
                max(0, chat.unread),
            )

    async def upsert_group(self, group: GroupRecord) -> None:
        conversation_id = await self.conversation(
            group.jid,
            is_group=True,
            title=group.subject,
            title_at=_ts(group.subject_time) if group.subject and group.subject_time else None,
        )
        if group.participants is not None:
            await self.conn.execute(
                "UPDATE conversations SET metadata = metadata || jsonb_build_object("
                "'participants', $2::jsonb) WHERE id = $1",
                conversation_id,
                list(group.participants),
            )

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
            "SELECT id, status_rank FROM messages"
            " WHERE instance_name = $1 AND wa_message_id = $2 AND from_me = $3",
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
            _ts(record.timestamp),
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
            _ts(record.timestamp),
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
            "DELETE FROM message_patches WHERE instance_name = $1 AND wa_message_id = $2"
            " AND (from_me = $3 OR status IS NULL)"
            " RETURNING from_me, status, edited_text, edited_at",
            self.instance,
            wa_id,
            from_me,
        )
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
            "WITH target AS (SELECT id, status_rank FROM messages WHERE instance_name = $1"
            " AND wa_message_id = $2 AND from_me = $3)"
            " UPDATE messages m SET status = $4, status_rank = $5 FROM target"
            " WHERE m.id = target.id AND target.status_rank < $5 RETURNING m.id",
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
            "SELECT true FROM messages WHERE instance_name = $1 AND wa_message_id = $2"
            " AND from_me = $3",
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
            "WITH target AS (SELECT id FROM messages WHERE instance_name = $1"
            " AND wa_message_id = $2 ORDER BY (from_me = $3) DESC LIMIT 1)"
            " UPDATE messages m SET text = $4, edited_at = $5 FROM target WHERE m.id = target.id"
            " AND (m.edited_at IS NULL OR m.edited_at <= $5) RETURNING true",
            self.instance,
            edit.wa_id,
            edit.from_me,
            edit.text,
            edited_at,
        )
        if updated:
            return
        known = await self.conn.fetchval(
            "SELECT true FROM messages WHERE instance_name = $1 AND wa_message_id = $2 LIMIT 1",
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
