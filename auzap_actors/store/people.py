"""Contacts and jid aliases: the people half of `messages.BatchWriter`.

One person is one contact and one conversation: a `@lid` becomes its phone jid as soon as
the pair is learned, and whatever was filed under the `@lid` is folded into the phone jid.
"""

from __future__ import annotations

from typing import Any

from ..core.payloads import Alias, ContactRecord, is_lid, phone_of

# The statements of the @lid merge path, named so that tests/test_merge_indexes.py can EXPLAIN
# exactly these (against other tenants' rows: none may be read by a sequential scan).
# Parameters are noted as ($1 ...); every one is scoped to one instance, by its name or by a
# row id that belongs to it.
SELECT_ALIAS = "SELECT phone_jid FROM jid_aliases WHERE instance_name = $1 AND lid = $2"
INSERT_ALIAS = (
    "INSERT INTO jid_aliases (instance_name, lid, phone_jid) VALUES ($1, $2, $3)"
    " ON CONFLICT DO NOTHING RETURNING true"
)
SELECT_CONTACT_ID = "SELECT id FROM contacts WHERE instance_name = $1 AND jid = $2"
# ($1 lid contact, $2 phone contact, $3 instance)
MOVE_CONVERSATIONS_TO_CONTACT = (
    "UPDATE conversations SET contact_id = $2 WHERE contact_id = $1 AND instance_name = $3"
)
# ($1 lid contact, $2 phone contact)
MERGE_CONTACT_DETAILS = (
    "UPDATE contacts p SET push_name = coalesce(p.push_name, l.push_name),"
    " profile_pic_url = coalesce(p.profile_pic_url, l.profile_pic_url)"
    " FROM contacts l WHERE p.id = $2 AND l.id = $1"
)
DELETE_CONTACT = "DELETE FROM contacts WHERE id = $1"
# ($1 contact, $2 phone jid, $3 phone number)
RENAME_CONTACT = "UPDATE contacts SET jid = $2, phone_number = $3, updated_at = now() WHERE id = $1"
# ($1 instance, $2 phone jid, $3 lid)
SET_CONTACT_LID = (
    "UPDATE contacts SET lid = $3 WHERE instance_name = $1 AND jid = $2 AND lid IS DISTINCT FROM $3"
)
SELECT_CONVERSATION_ID = "SELECT id FROM conversations WHERE instance_name = $1 AND remote_jid = $2"
# ($1 lid conversation, $2 phone conversation, $3 phone jid)
MOVE_MESSAGES_TO_CONVERSATION = (
    "UPDATE messages SET conversation_id = $2, remote_jid = $3 WHERE conversation_id = $1"
)
# ($1 lid conversation, $2 phone conversation)
MERGE_CONVERSATION_DETAILS = (
    "UPDATE conversations p SET last_message_at = greatest(p.last_message_at,"
    " l.last_message_at), unread_count = p.unread_count + l.unread_count,"
    " title = coalesce(p.title, l.title) FROM conversations l"
    " WHERE p.id = $2 AND l.id = $1"
)
DELETE_CONVERSATION = "DELETE FROM conversations WHERE id = $1"
# ($1 conversation, $2 phone jid)
RENAME_CONVERSATION = "UPDATE conversations SET remote_jid = $2 WHERE id = $1"
RENAME_CONVERSATION_MESSAGES = "UPDATE messages SET remote_jid = $2 WHERE conversation_id = $1"
# ($1 instance, $2 lid, $3 phone jid).  The LIKE repeats the partial index's predicate
# (migration 0006: only messages whose sender is still a @lid are in it); $2 is always a @lid.
RENAME_SENDER = (
    "UPDATE messages SET sender_jid = $3 WHERE instance_name = $1 AND sender_jid = $2"
    " AND sender_jid LIKE '%@lid'"
)
# ($1 instance, $2 jid, $3 lid or NULL, $4 phone number, $5 push name, $6 picture).
# A phone contact carries its @lid when the pair is known (learned before or now).
UPSERT_CONTACT = (
    "INSERT INTO contacts (instance_name, jid, lid, phone_number, push_name,"
    " profile_pic_url) VALUES ($1, $2, coalesce($3, (SELECT lid FROM jid_aliases"
    " WHERE instance_name = $1 AND phone_jid = $2 LIMIT 1)), $4, $5, $6)"
    " ON CONFLICT (instance_name, jid) DO UPDATE SET"
    " lid = coalesce(contacts.lid, EXCLUDED.lid),"
    " push_name = coalesce(EXCLUDED.push_name, contacts.push_name),"
    " profile_pic_url = coalesce(EXCLUDED.profile_pic_url, contacts.profile_pic_url),"
    " updated_at = now() RETURNING id"
)


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
            phone = await self.conn.fetchval(SELECT_ALIAS, self.instance, jid)
            self._canonical[jid] = phone or jid
        return self._canonical[jid]

    async def learn_alias(self, alias: Alias) -> None:
        """Record a @lid/phone pair; fold everything filed under the @lid into the phone jid."""
        self._canonical[alias.lid] = alias.phone_jid
        new = await self.conn.fetchval(INSERT_ALIAS, self.instance, alias.lid, alias.phone_jid)
        if new:
            await self._merge(alias)

    async def _merge(self, alias: Alias) -> None:
        conn, instance, lid, phone = self.conn, self.instance, alias.lid, alias.phone_jid
        lid_contact = await conn.fetchval(SELECT_CONTACT_ID, instance, lid)
        phone_contact = await conn.fetchval(SELECT_CONTACT_ID, instance, phone)
        if lid_contact and phone_contact:
            await conn.execute(MOVE_CONVERSATIONS_TO_CONTACT, lid_contact, phone_contact, instance)
            await conn.execute(MERGE_CONTACT_DETAILS, lid_contact, phone_contact)
            await conn.execute(DELETE_CONTACT, lid_contact)
        elif lid_contact:
            await conn.execute(RENAME_CONTACT, lid_contact, phone, phone_of(phone))
        await conn.execute(SET_CONTACT_LID, instance, phone, lid)
        lid_conv = await conn.fetchval(SELECT_CONVERSATION_ID, instance, lid)
        phone_conv = await conn.fetchval(SELECT_CONVERSATION_ID, instance, phone)
        if lid_conv and phone_conv:
            await conn.execute(MOVE_MESSAGES_TO_CONVERSATION, lid_conv, phone_conv, phone)
            await conn.execute(MERGE_CONVERSATION_DETAILS, lid_conv, phone_conv)
            await conn.execute(DELETE_CONVERSATION, lid_conv)
        elif lid_conv:
            await conn.execute(RENAME_CONVERSATION, lid_conv, phone)
            await conn.execute(RENAME_CONVERSATION_MESSAGES, lid_conv, phone)
        await conn.execute(RENAME_SENDER, instance, lid, phone)

    async def upsert_contact(self, contact: ContactRecord) -> int:
        jid = await self.canonical(contact.jid)
        contact_id: int = await self.conn.fetchval(
            UPSERT_CONTACT,
            self.instance,
            jid,
            jid if is_lid(jid) else None,
            phone_of(jid),
            contact.push_name,
            contact.profile_pic_url,
        )
        return contact_id
