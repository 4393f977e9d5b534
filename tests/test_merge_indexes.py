"""No statement of the @lid merge path reads another tenant's rows.

The database holds 50k contacts, conversations, messages, aliases and patches of 500 other
tenants and a handful of a new tenant's; every statement of the merge path (and the per-message
lookups beside it) is EXPLAINed with that new tenant's parameters, both as the planner first
plans it (custom plan) and as a prepared statement is planned after a few runs (generic plan).
No plan node may be a sequential scan of those tables; where a prefix of a tenant's index would
avoid one but still read all of that tenant's rows, the exact index must be the one used.  The
statements are the code's own constants, imported, not copies.  Run with `-s` to see the index
each statement uses.
"""

from __future__ import annotations

from typing import Any

from auzap_actors.store import messages as message_sql
from auzap_actors.store import people as people_sql
from auzap_actors.store.db import open_pool

from .plans import custom_plan, generic_plan, plan_nodes

OTHERS = 500
ROWS = 50_000
TABLES = {"contacts", "conversations", "messages", "jid_aliases", "message_patches"}
NEW = "user_new_tenant"
LID, PHONE = "99887766554433@lid", "5511977776666@s.whatsapp.net"

# One statement per table; other tenants are user_other_0 .. user_other_499, a fifth of their
# contacts and a third of their message senders still @lids.
FILL = [
    f"""INSERT INTO contacts (instance_name, jid, lid, phone_number, push_name)
    SELECT 'user_other_' || (g % {OTHERS}),
      CASE WHEN g % 5 = 0 THEN g || '@lid' ELSE (5511900000000 + g) || '@s.whatsapp.net' END,
      CASE WHEN g % 5 = 0 THEN g || '@lid' END,
      CASE WHEN g % 5 = 0 THEN NULL ELSE (5511900000000 + g)::text END,
      'Pessoa ' || g
    FROM generate_series(1, {ROWS}) AS g""",
    """INSERT INTO conversations (instance_name, remote_jid, contact_id, last_message_at,
      unread_count)
    SELECT instance_name, jid, id, now() - (id % 1000) * interval '1 minute', id % 3
    FROM contacts""",
    """INSERT INTO messages (instance_name, conversation_id, remote_jid, wa_message_id, from_me,
      sender_jid, type, text, status, status_rank, sent_at, raw)
    SELECT c.instance_name, c.id, c.remote_jid, '3EB0' || lpad(n::text, 12, '0'), n % 2 = 0,
      CASE WHEN n % 3 = 0 THEN n || '@lid' ELSE c.remote_jid END, 'conversation',
      'mensagem ' || n, 'delivered', 2, now() - n * interval '1 second', '{}'::jsonb
    FROM (SELECT id, instance_name, remote_jid, row_number() OVER () AS n FROM conversations) c""",
    f"""INSERT INTO jid_aliases (instance_name, lid, phone_jid)
    SELECT 'user_other_' || (g % {OTHERS}), (g + 1000000) || '@lid',
      (5511800000000 + g) || '@s.whatsapp.net'
    FROM generate_series(1, {ROWS}) AS g""",
    f"""INSERT INTO message_patches (instance_name, wa_message_id, from_me, status, status_rank)
    SELECT 'user_other_' || (g % {OTHERS}), 'PATCH' || g, g % 2 = 0, 'read', 3
    FROM generate_series(1, {ROWS}) AS g""",
]


async def _new_tenant(conn: Any) -> dict[str, Any]:
    """The new tenant mid-merge: a @lid contact and conversation, their phone twins, messages
    from the @lid, a waiting patch."""
    ids: dict[str, Any] = {}
    for key, jid in (("lid", LID), ("phone", PHONE)):
        ids[f"{key}_contact"] = await conn.fetchval(
            "INSERT INTO contacts (instance_name, jid, lid) VALUES ($1, $2, $3) RETURNING id",
            NEW,
            jid,
            LID if key == "lid" else None,
        )
        ids[f"{key}_conv"] = await conn.fetchval(
            "INSERT INTO conversations (instance_name, remote_jid, contact_id)"
            " VALUES ($1, $2, $3) RETURNING id",
            NEW,
            jid,
            ids[f"{key}_contact"],
        )
    await conn.execute(
        "INSERT INTO messages (instance_name, conversation_id, remote_jid, wa_message_id,"
        " from_me, sender_jid, type, status, status_rank, sent_at, raw)"
        " SELECT $1, $2, $3, 'NEW' || g, false, $3, 'conversation', 'delivered', 2, now(), '{}'"
        " FROM generate_series(1, 5) AS g",
        NEW,
        ids["lid_conv"],
        LID,
    )
    await conn.execute(
        "INSERT INTO message_patches (instance_name, wa_message_id, from_me, status, status_rank)"
        " VALUES ($1, 'NEW9', false, 'read', 3)",
        NEW,
    )
    return ids


def _statements(ids: dict[str, Any]) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(name, SQL, realistic parameters of the new tenant) of every statement checked."""
    lid_contact, phone_contact = ids["lid_contact"], ids["phone_contact"]
    lid_conv, phone_conv = ids["lid_conv"], ids["phone_conv"]
    p, m = people_sql, message_sql
    return [
        ("people.SELECT_ALIAS", p.SELECT_ALIAS, (NEW, LID)),
        ("people.INSERT_ALIAS", p.INSERT_ALIAS, (NEW, LID, PHONE)),
        ("people.SELECT_CONTACT_ID", p.SELECT_CONTACT_ID, (NEW, LID)),
        (
            "people.MOVE_CONVERSATIONS_TO_CONTACT",
            p.MOVE_CONVERSATIONS_TO_CONTACT,
            (lid_contact, phone_contact, NEW),
        ),
        ("people.MERGE_CONTACT_DETAILS", p.MERGE_CONTACT_DETAILS, (lid_contact, phone_contact)),
        ("people.DELETE_CONTACT", p.DELETE_CONTACT, (lid_contact,)),
        ("people.RENAME_CONTACT", p.RENAME_CONTACT, (lid_contact, PHONE, "5511977776666")),
        ("people.SET_CONTACT_LID", p.SET_CONTACT_LID, (NEW, PHONE, LID)),
        ("people.SELECT_CONVERSATION_ID", p.SELECT_CONVERSATION_ID, (NEW, LID)),
        (
            "people.MOVE_MESSAGES_TO_CONVERSATION",
            p.MOVE_MESSAGES_TO_CONVERSATION,
            (lid_conv, phone_conv, PHONE),
        ),
        (
            "people.MERGE_CONVERSATION_DETAILS",
            p.MERGE_CONVERSATION_DETAILS,
            (lid_conv, phone_conv),
        ),
        ("people.DELETE_CONVERSATION", p.DELETE_CONVERSATION, (lid_conv,)),
        ("people.RENAME_CONVERSATION", p.RENAME_CONVERSATION, (lid_conv, PHONE)),
        ("people.RENAME_CONVERSATION_MESSAGES", p.RENAME_CONVERSATION_MESSAGES, (lid_conv, PHONE)),
        ("people.RENAME_SENDER", p.RENAME_SENDER, (NEW, LID, PHONE)),
        (
            "people.UPSERT_CONTACT",
            p.UPSERT_CONTACT,
            (NEW, PHONE, None, "5511977776666", "Ana", None),
        ),
        # What PostgreSQL itself runs for the foreign keys when DELETE_CONTACT and
        # DELETE_CONVERSATION delete a row (not visible in their plans): ON DELETE SET NULL
        # and ON DELETE CASCADE, looked up by the referencing column.
        (
            "FK conversations.contact_id SET NULL",
            "UPDATE ONLY conversations SET contact_id = NULL WHERE $1 = contact_id",
            (lid_contact,),
        ),
        (
            "FK messages.conversation_id CASCADE",
            "DELETE FROM ONLY messages WHERE $1 = conversation_id",
            (lid_conv,),
        ),
        ("messages.FIND_MESSAGE", m.FIND_MESSAGE, (NEW, "NEW1", False)),
        ("messages.MESSAGE_EXISTS", m.MESSAGE_EXISTS, (NEW, "NEW1", False)),
        ("messages.TAKE_PATCHES", m.TAKE_PATCHES, (NEW, "NEW9", False)),
        ("messages.ADVANCE_STATUS", m.ADVANCE_STATUS, (NEW, "NEW1", False, "read", 3)),
        ("messages.EDIT_MESSAGE", m.EDIT_MESSAGE, (NEW, "NEW1", False, "editado", None)),
        ("messages.MESSAGE_KNOWN", m.MESSAGE_KNOWN, (NEW, "NEW1")),
    ]


# Where a tenant-scoped index prefix would do without a sequential scan but still read all of
# the tenant's rows (every message of the instance, every alias), the exact index of migration
# 0006 must be the one chosen.
EXPECTED_INDEX = {
    "people.MOVE_CONVERSATIONS_TO_CONTACT": "idx_conversations_contact_id",
    "people.RENAME_SENDER": "idx_messages_lid_sender",
    "people.UPSERT_CONTACT": "idx_jid_aliases_phone",
    "FK conversations.contact_id SET NULL": "idx_conversations_contact_id",
}


async def test_no_statement_of_the_merge_path_scans_other_tenants(database_url: str) -> None:
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            for statement in FILL:
                await conn.execute(statement)
            ids = await _new_tenant(conn)
            await conn.execute("ANALYZE")
            counts = {
                table: await conn.fetchval(f"SELECT count(*) FROM {table}") for table in TABLES
            }
            assert all(n >= ROWS for n in counts.values()), counts

            report, scans = [], []
            for name, sql, args in _statements(ids):
                for kind, plan in (
                    ("custom", await custom_plan(conn, sql, args)),
                    ("generic", await generic_plan(conn, sql, args)),
                ):
                    nodes = plan_nodes(plan)
                    scans += [
                        f"{name} ({kind}): Seq Scan on {n['Relation Name']}"
                        for n in nodes
                        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in TABLES
                    ]
                    used = sorted(
                        {
                            f"{n['Node Type']} {n.get('Index Name', n.get('Relation Name'))}"
                            for n in nodes
                            if "Scan" in n["Node Type"] and "Relation Name" in n
                        }
                    )
                    if name in EXPECTED_INDEX:
                        indexes = {n.get("Index Name") for n in nodes}
                        if EXPECTED_INDEX[name] not in indexes:
                            scans.append(f"{name} ({kind}): not on {EXPECTED_INDEX[name]}")
                    report.append(f"{name:42} {kind:8} {', '.join(used)}")
    print("\nstatement                                  plan     scans", *report, sep="\n")
    assert scans == [], scans
