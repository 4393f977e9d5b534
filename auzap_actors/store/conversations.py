"""Conversations (chats and groups): the conversation half of `messages.BatchWriter`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..core.payloads import ChatRecord, ContactRecord, GroupRecord
from .people import PeopleWriter


def timestamp_or_now(seconds: int | None) -> datetime:
    if not seconds:
        return datetime.now(UTC)
    return datetime.fromtimestamp(seconds, UTC)


class ConversationWriter(PeopleWriter):
    """Writes one instance's conversations (and their contacts) on one connection."""

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
            title_at=(
                timestamp_or_now(group.subject_time)
                if group.subject and group.subject_time
                else None
            ),
        )
        if group.participants is not None:
            await self.conn.execute(
                "UPDATE conversations SET metadata = metadata || jsonb_build_object("
                "'participants', $2::jsonb) WHERE id = $1",
                conversation_id,
                list(group.participants),
            )

    async def delete_chat(self, jid: str) -> None:
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
