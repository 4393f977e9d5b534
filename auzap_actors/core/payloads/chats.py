"""Contact, chat, presence and group events."""

from __future__ import annotations

from typing import Any

from ..webhook import WebhookError
from .records import (
    GROUP_SERVER,
    IGNORED_SUFFIXES,
    USER_SERVER,
    Alias,
    Batch,
    ChatRecord,
    ContactRecord,
    GroupRecord,
    Presence,
    as_int,
    as_object,
    as_objects,
    as_text,
    as_timestamp,
    clean_jid,
    is_lid,
    is_phone_jid,
    resolve,
)


def parse_contacts(data: Any) -> Batch:
    contacts, aliases = [], []
    for item in as_objects(data, "contacts data"):
        jid, alias = resolve(item.get("remoteJid") or item.get("id"), item.get("lid"))
        if jid is None:
            continue
        if alias:
            aliases.append(alias)
        contacts.append(
            ContactRecord(
                jid,
                push_name=as_text(
                    item.get("pushName") or item.get("name") or item.get("notify"), 200
                ),
                profile_pic_url=as_text(item.get("profilePicUrl") or item.get("imgUrl"), 2000),
            )
        )
    return Batch(aliases=tuple(aliases), contacts=tuple(contacts))


def parse_chats(data: Any) -> Batch:
    chats = []
    for item in as_objects(data, "chats data"):
        jid = clean_jid(item.get("remoteJid") or item.get("id"))
        if jid is None or jid.endswith(IGNORED_SUFFIXES):
            continue
        unread = as_int(item.get("unreadMessages"))
        if unread is not None:
            unread = max(0, min(unread, 1_000_000))
        chats.append(ChatRecord(jid, as_text(item.get("name"), 500), unread))
    return Batch(chats=tuple(chats))


def parse_chat_deletes(data: Any) -> Batch:
    items = data if isinstance(data, list) else [data]
    jids = [clean_jid(i.get("remoteJid") if isinstance(i, dict) else i) for i in items]
    return Batch(deleted_chats=tuple(j for j in jids if j))


def parse_presence(data: Any) -> Batch:
    data = as_object(data, "presence.update data")
    chat = clean_jid(data.get("id"))
    presences = data.get("presences")
    if chat is None or not isinstance(presences, dict):
        raise WebhookError("invalid_data", "presence.update needs `id` and `presences`.")
    found = []
    for who, info in presences.items():
        jid = clean_jid(who)
        if jid is None or not isinstance(info, dict):
            continue
        state = as_text(info.get("lastKnownPresence"), 32) or "unavailable"
        found.append(Presence(chat, jid, state, as_int(info.get("lastSeen"))))
    return Batch(presences=tuple(found))


def parse_groups(data: Any) -> Batch:
    groups = []
    for item in as_objects(data, "groups data"):
        jid = clean_jid(item.get("id"))
        if jid is None:
            continue
        members = item.get("participants")
        participants = None
        if isinstance(members, list):
            ids = [clean_jid(m.get("id") if isinstance(m, dict) else m) for m in members]
            participants = tuple(j for j in ids if j)
        groups.append(
            GroupRecord(
                jid,
                as_text(item.get("subject"), 500),
                participants,
                as_timestamp(item.get("subjectTime")) or None,
            )
        )
    return Batch(groups=tuple(groups))


def parse_participants(data: Any) -> Batch:
    data = as_object(data, "group-participants.update data")
    aliases = []
    contacts = []
    entries = data.get("participantsData")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        lid, phone = clean_jid(entry.get("jid")), clean_jid(entry.get("phoneNumber"))
        if phone is None and isinstance(entry.get("phoneNumber"), str):
            digits = entry["phoneNumber"].lstrip("+")
            phone = f"{digits}{USER_SERVER}" if digits.isdigit() else None
        if is_lid(lid) and is_phone_jid(phone):
            assert lid is not None and phone is not None
            aliases.append(Alias(lid, phone))
            contacts.append(ContactRecord(phone, push_name=as_text(entry.get("name"), 200)))
    group = clean_jid(data.get("id"))
    groups = (GroupRecord(group, None, None),) if group and group.endswith(GROUP_SERVER) else ()
    return Batch(aliases=tuple(aliases), contacts=tuple(contacts), groups=groups)
