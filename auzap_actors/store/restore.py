"""Restoring an export (store/export.py's NDJSON) into the database, idempotently.

The header names the instance; its row is created when missing (never anything in Evolution:
the user's next connect creates the instance there).  Contacts, conversations and messages are
inserted with the ids the export carries, `ON CONFLICT DO NOTHING`: a row that is already there
stays as it is (the database is at least as new as the backup), so importing twice changes
nothing, and importing into a wiped database gives back the same rows, ids included, and the
same export.  Lines are taken in batches of `BATCH` (one statement per batch and kind):
memory stays bounded whatever the size.

What an export does not carry is not restored: messages' raw payloads (stored as `{}`), quoted
ids and edit times, a group subject's time.  Contacts that name both a phone jid and a @lid give
back their `jid_aliases` pair, so later events under the @lid fold into the same contact.

Contact ids are BIGSERIAL: keeping the exported id means writing it explicitly and moving the
sequence past it, which is done under a short lock of the contacts table (one batch) so that no
insert of the running service can draw an id in between.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.naming import user_id_from_instance_name
from ..core.payloads import STATUS_RANK
from .export import EXPORT_VERSION
from .instances import ensure_auth_user

BATCH = 500


class RestoreError(Exception):
    """The file is not an export this version can restore; the message says where and why."""


@dataclass(slots=True)
class Tally:
    inserted: int = 0
    present: int = 0  # already there (or, for messages, their conversation is not)


@dataclass(slots=True)
class Restored:
    instance: str
    created_instance: bool = False
    contacts: Tally = field(default_factory=Tally)
    conversations: Tally = field(default_factory=Tally)
    messages: Tally = field(default_factory=Tally)
    complete: bool = False  # the end line was read and its counts match the lines
    warnings: list[str] = field(default_factory=list)


def _ts(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise RestoreError(f"{where}: a time must be an ISO 8601 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise RestoreError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise RestoreError(f"{where}: {value!r} has no time zone")
    return parsed


def _str(data: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise RestoreError(f"{where}: `{key}` must be a string")
    return value


def _uuid(data: dict[str, Any], key: str, where: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(data.get(key)))
    except ValueError:
        raise RestoreError(f"{where}: `{key}` must be a UUID") from None


def _contact(data: dict[str, Any], where: str) -> tuple[Any, ...]:
    raw_id = data.get("id")
    if not isinstance(raw_id, str) or not raw_id.isdigit():
        raise RestoreError(f"{where}: a contact's `id` is a string of digits")
    return (
        int(raw_id),
        _str(data, "remote_jid", where, required=True),
        _str(data, "lid", where),
        _str(data, "phone_number", where),
        _str(data, "push_name", where),
        _str(data, "profile_pic_url", where),
        _ts(data.get("created_at"), where),
        _ts(data.get("updated_at"), where),
    )


def _conversation(data: dict[str, Any], where: str) -> tuple[Any, ...]:
    contact = data.get("contact")
    contact_jid = contact.get("remote_jid") if isinstance(contact, dict) else None
    contact_name = contact.get("push_name") if isinstance(contact, dict) else None
    title = _str(data, "title", where)
    unread = data.get("unread_count", 0)
    if not isinstance(unread, int) or isinstance(unread, bool) or not 0 <= unread < 2**31:
        raise RestoreError(f"{where}: `unread_count` must be a whole number")
    return (
        _uuid(data, "id", where),
        _str(data, "remote_jid", where, required=True),
        bool(data.get("is_group")),
        # The view shows the contact's name when the chat has no title of its own: that is
        # not a title to store (it would stop following the contact's name).
        None if title is not None and title == contact_name else title,
        contact_jid if isinstance(contact_jid, str) else None,
        _ts(data.get("last_message_at"), where),
        unread,
        _ts(data.get("deleted_at"), where),
    )


def _message(data: dict[str, Any], where: str) -> tuple[Any, ...]:
    status = _str(data, "status", where, required=True)
    if status not in STATUS_RANK:
        raise RestoreError(f"{where}: unknown message status {status!r}")
    sent_at = _ts(data.get("timestamp"), where)
    if sent_at is None:
        raise RestoreError(f"{where}: a message needs its `timestamp`")
    return (
        _uuid(data, "id", where),
        _uuid(data, "conversation_id", where),
        _str(data, "remote_jid", where, required=True),
        _str(data, "wa_message_id", where, required=True),
        bool(data.get("from_me")),
        _str(data, "sender_jid", where),
        _str(data, "push_name", where),
        _str(data, "type", where, required=True),
        _str(data, "text", where),
        status,
        STATUS_RANK[status],
        sent_at,
        bool(data.get("auto_reply")),
    )


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


_CONTACTS_WITH_IDS = (
    "INSERT INTO contacts (id, instance_name, jid, lid, phone_number, push_name,"
    " profile_pic_url, created_at, updated_at)"
    " SELECT u.id, $1, u.jid, u.lid, u.phone, u.name, u.pic,"
    "  coalesce(u.created_at, now()), coalesce(u.updated_at, now())"
    " FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    "  $8::timestamptz[], $9::timestamptz[]) AS u(id, jid, lid, phone, name, pic, created_at,"
    "  updated_at)"
    " WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.id = u.id)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
# A contact whose id another row holds (restored into a database that lives on) gets a new id.
_CONTACTS_NEW_IDS = (
    "INSERT INTO contacts (instance_name, jid, lid, phone_number, push_name,"
    " profile_pic_url, created_at, updated_at)"
    " SELECT $1, u.jid, u.lid, u.phone, u.name, u.pic,"
    "  coalesce(u.created_at, now()), coalesce(u.updated_at, now())"
    " FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
    "  $8::timestamptz[], $9::timestamptz[]) AS u(id, jid, lid, phone, name, pic, created_at,"
    "  updated_at)"
    " WHERE NOT EXISTS (SELECT 1 FROM contacts c WHERE c.instance_name = $1 AND c.jid = u.jid)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_BUMP_CONTACT_IDS = (
    "SELECT setval(pg_get_serial_sequence('contacts', 'id'),"
    " greatest((SELECT max(id) FROM contacts), nextval(pg_get_serial_sequence('contacts', 'id'))))"
)
_ALIASES = (
    "INSERT INTO jid_aliases (instance_name, lid, phone_jid)"
    " SELECT $1, u.lid, u.jid FROM unnest($2::text[], $3::text[]) AS u(jid, lid)"
    " WHERE u.lid LIKE '%@lid' AND u.jid LIKE '%@s.whatsapp.net'"
    " ON CONFLICT DO NOTHING"
)
_CONVERSATION_SOURCE = (
    " FROM unnest($2::uuid[], $3::text[], $4::bool[], $5::text[], $6::text[],"
    "  $7::timestamptz[], $8::int[], $9::timestamptz[]) AS u(id, jid, is_group, title,"
    "  contact_jid, last_message_at, unread_count, deleted_at)"
    " LEFT JOIN contacts k ON k.instance_name = $1 AND k.jid = u.contact_jid"
)
_CONVERSATIONS = (
    "INSERT INTO conversations (id, instance_name, remote_jid, is_group, title, contact_id,"
    " last_message_at, unread_count, deleted_at)"
    " SELECT u.id, $1, u.jid, u.is_group, u.title, k.id, u.last_message_at, u.unread_count,"
    "  u.deleted_at" + _CONVERSATION_SOURCE + " ON CONFLICT DO NOTHING RETURNING id"
)
_CONVERSATIONS_NEW_IDS = (
    "INSERT INTO conversations (instance_name, remote_jid, is_group, title, contact_id,"
    " last_message_at, unread_count, deleted_at)"
    " SELECT $1, u.jid, u.is_group, u.title, k.id, u.last_message_at, u.unread_count,"
    "  u.deleted_at" + _CONVERSATION_SOURCE + " WHERE NOT EXISTS (SELECT 1 FROM conversations c"
    "  WHERE c.instance_name = $1 AND c.remote_jid = u.jid)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
# Exported conversation ids that live under another id here (the chat was there already).
_MOVED_CONVERSATIONS = (
    "SELECT u.id AS exported, c.id AS here FROM unnest($2::uuid[], $3::text[]) AS u(id, jid)"
    " JOIN conversations c ON c.instance_name = $1 AND c.remote_jid = u.jid WHERE c.id <> u.id"
)
# In file order (oldest first per conversation), so `seq` keeps the order of equal times.
# Only into a conversation of this instance: a message naming another one is not restored.
_MESSAGES = (
    "INSERT INTO messages (id, instance_name, conversation_id, remote_jid, wa_message_id,"
    " from_me, sender_jid, push_name, type, text, status, status_rank, sent_at, auto_reply, raw)"
    " SELECT u.id, $1, c.id, u.remote_jid, u.wa_id, u.from_me, u.sender, u.push_name, u.type,"
    "  u.text, u.status, u.rank, u.sent_at, u.auto_reply, '{}'::jsonb"
    " FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bool[], $7::text[],"
    "  $8::text[], $9::text[], $10::text[], $11::text[], $12::int2[], $13::timestamptz[],"
    "  $14::bool[]) WITH ORDINALITY AS u(id, conversation_id, remote_jid, wa_id, from_me,"
    "  sender, push_name, type, text, status, rank, sent_at, auto_reply, n)"
    " JOIN conversations c ON c.id = u.conversation_id AND c.instance_name = $1"
    " ORDER BY u.n ON CONFLICT DO NOTHING RETURNING id"
)


class Restorer:
    """Feed it the export's lines in order (`line`), then `finish`."""

    def __init__(self, pool: Any, *, create_users: bool) -> None:
        self.pool = pool
        self.create_users = create_users
        self.result: Restored | None = None
        self._kind = "export"  # the section read last: lines come in the export's order
        self._batch: list[tuple[Any, ...]] = []
        self._moved: dict[uuid.UUID, uuid.UUID] = {}  # exported conversation id -> ours
        self._seen = {"contacts": 0, "conversations": 0, "messages": 0}
        self._ended = False

    async def line(self, number: int, line: Any) -> None:
        where = f"line {number}"
        if not isinstance(line, dict) or not isinstance(line.get("type"), str):
            raise RestoreError(f"{where}: not an export line (an object with a `type`)")
        kind = line["type"]
        if self._ended:
            raise RestoreError(f"{where}: a line after the end line")
        if self.result is None:
            if kind != "export":
                raise RestoreError(f"{where}: the file does not start with an export header")
            await self._header(line, where)
            return
        order = ["export", "contact", "conversation", "message", "end"]
        if kind not in order or order.index(kind) < order.index(self._kind):
            raise RestoreError(f"{where}: a {kind!r} line out of the export's order")
        if kind != self._kind:
            await self._flush()
            self._kind = kind
        if kind == "end":
            self._end(line, where)
            return
        data = line.get("data")
        if not isinstance(data, dict):
            raise RestoreError(f"{where}: `data` must be an object")
        parse = {"contact": _contact, "conversation": _conversation, "message": _message}[kind]
        self._batch.append(parse(data, where))
        self._seen[kind + "s"] += 1
        if len(self._batch) >= BATCH:
            await self._flush()

    async def finish(self) -> Restored:
        if self.result is None:
            raise RestoreError("the file is empty")
        await self._flush()
        if not self._ended:
            self.result.warnings.append(
                "no end line: the export is incomplete (what it had is restored)"
            )
        return self.result

    async def _header(self, line: dict[str, Any], where: str) -> None:
        if line.get("version") != EXPORT_VERSION:
            raise RestoreError(f"{where}: export version {line.get('version')!r} is not 1")
        name = line.get("instance_name")
        if not isinstance(name, str) or not name or len(name) > 200 or "\x00" in name:
            raise RestoreError(f"{where}: the header names no instance")
        self.result = Restored(name)
        self.result.created_instance = await self._ensure_instance(name)

    async def _ensure_instance(self, name: str) -> bool:
        """The instance's row, created if missing: its user read from a `user_<uuid>` name
        (unless that user has another instance), without anything in Evolution."""
        assert self.result is not None
        user = user_id_from_instance_name(name)
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(
                "SELECT true FROM whatsapp_instances WHERE instance_name = $1", name
            ):
                return False
            if user is not None and await conn.fetchval(
                "SELECT true FROM whatsapp_instances WHERE user_id = $1", user
            ):
                self.result.warnings.append(f"user {user} has another instance: row left unowned")
                user = None
            if user is not None and self.create_users:
                await ensure_auth_user(conn, user)
            elif user is not None and not await conn.fetchval(
                "SELECT true FROM auth.users WHERE id = $1", user
            ):
                self.result.warnings.append(f"user {user} is not in auth.users: row left unowned")
                user = None
            if user is None:
                self.result.warnings.append("`auzap-actors instances check` lists the row")
            row = await conn.fetchrow(
                "INSERT INTO whatsapp_instances (instance_name, user_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING id",
                name,
                user,
            )
        return row is not None

    def _end(self, line: dict[str, Any], where: str) -> None:
        assert self.result is not None
        self._ended = True
        counts = line.get("counts")
        if counts != self._seen:
            self.result.warnings.append(
                f"{where}: the end line counts {counts}, the file holds {self._seen}"
            )
            return
        self.result.complete = True

    async def _flush(self) -> None:
        rows, self._batch = self._batch, []
        if not rows or self.result is None:
            return
        name = self.result.instance
        if self._kind == "contact":
            inserted = await self._contacts(name, rows)
            tally = self.result.contacts
        elif self._kind == "conversation":
            inserted = await self._conversations(name, rows)
            tally = self.result.conversations
        else:
            rows = [(r[0], self._moved.get(r[1], r[1]), *r[2:]) for r in rows]
            inserted = len(await self.pool.fetch(_MESSAGES, name, *_columns(rows)))
            tally = self.result.messages
        tally.inserted += inserted
        tally.present += len(rows) - inserted

    async def _contacts(self, name: str, rows: list[tuple[Any, ...]]) -> int:
        columns = _columns(rows)
        async with self.pool.acquire() as conn, conn.transaction():
            # No insert of the service draws a contact id while ours are written and the
            # sequence moved past them (reads go on; the lock ends with this batch).
            await conn.execute("LOCK TABLE contacts IN SHARE ROW EXCLUSIVE MODE")
            with_ids = await conn.fetch(_CONTACTS_WITH_IDS, name, *columns)
            if with_ids:
                await conn.fetchval(_BUMP_CONTACT_IDS)
            new_ids = await conn.fetch(_CONTACTS_NEW_IDS, name, *columns)
            await conn.execute(_ALIASES, name, columns[1], columns[2])
        return len(with_ids) + len(new_ids)

    async def _conversations(self, name: str, rows: list[tuple[Any, ...]]) -> int:
        columns = _columns(rows)
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetch(_CONVERSATIONS, name, *columns)
            again = await conn.fetch(_CONVERSATIONS_NEW_IDS, name, *columns)
            for row in await conn.fetch(_MOVED_CONVERSATIONS, name, columns[0], columns[1]):
                self._moved[row["exported"]] = row["here"]
        return len(inserted) + len(again)


async def restore(
    pool: Any, lines: AsyncIterable[tuple[int, Any]], *, create_users: bool
) -> Restored:
    """Restore the export whose (line number, decoded line) pairs `lines` yields."""
    restorer = Restorer(pool, create_users=create_users)
    async for number, line in lines:
        await restorer.line(number, line)
    return await restorer.finish()
