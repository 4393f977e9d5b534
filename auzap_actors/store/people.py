"""Contacts and jid aliases: the people half of `messages.BatchWriter`.

One person is one contact and one conversation: a `@lid` becomes its phone jid as soon as
the pair is learned, and whatever was filed under the `@lid` is folded into the phone jid.
"""

from __future__ import annotations

from typing import Any

from ..core.payloads import Alias, ContactRecord, is_lid, phone_of


class PeopleWriter:
    """Writes one instance's contacts and @lid/phone aliases on one connection."""

    def __init__(self, conn: Any, instance_name: str) -> None:
        self.conn = conn
        self.instance = instance_name
        self._canonical: dict[str, str] = {}

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
