"""Several instances per user (AUZAP_MAX_INSTANCES_PER_USER above 1): the operator's schema
step and the creation of a user's extra instances.

The seed's schema allows one instance per user (`idx_whatsapp_instances_user_unique`).  A
numbered migration cannot read a runtime setting, so the change is split in two:

1. migration 0011 adds the nullable `instance_label` column and nothing else: a 1:1 database
   keeps its rows and its indexes exactly;
2. `enable_multi_instance` (the CLI's `migrate --multi-instance`, an explicit operator act)
   drops the unique index on user_id and adds a unique index on (user_id, instance_label) for
   labelled rows.  It is idempotent, and the service refuses to start with the setting above 1
   until it has run (`multi_instance_ready`).

A user's instances are `user_<uuid>` (the primary) and `user_<uuid>_<n>`: the unique index on
instance_name keeps each (user, n) single, and an advisory lock per user makes the limit check
and the insert one decision across nodes.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..core.naming import instance_name_for, ordinal_for_user
from . import inbox
from .instances import _COLUMNS, InstanceRecord, _record, ensure_auth_user, find_by_user

USER_UNIQUE_INDEX = "idx_whatsapp_instances_user_unique"
LABEL_UNIQUE_INDEX = "idx_whatsapp_instances_user_label_unique"

_MIGRATE_LOCK = 0x6175_7A61  # store/migrate.py's lock: never beside a running migration
_USER_LOCK = 0x6175_7A62  # the class of the per-user creation locks


class InstanceLimit(Exception):
    """The user already owns as many instances as AUZAP_MAX_INSTANCES_PER_USER allows."""


async def _index_exists(db: Any, name: str) -> bool:
    found = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = 'whatsapp_instances' AND indexname = $1)",
        name,
    )
    return bool(found)


async def multi_instance_ready(db: Any) -> bool:
    """Whether the schema allows several instances per user (the operator step ran)."""
    return not await _index_exists(db, USER_UNIQUE_INDEX)


async def enable_multi_instance(pool: Any) -> list[str]:
    """The operator step: what it changed now (nothing when it had run before).

    One transaction; the table is locked for the moment the index drop takes."""
    changes: list[str] = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            if await _index_exists(conn, USER_UNIQUE_INDEX):
                await conn.execute(f"DROP INDEX {USER_UNIQUE_INDEX}")
                changes.append(f"dropped {USER_UNIQUE_INDEX}")
            if not await _index_exists(conn, LABEL_UNIQUE_INDEX):
                await conn.execute(
                    f"CREATE UNIQUE INDEX {LABEL_UNIQUE_INDEX} ON whatsapp_instances"
                    " (user_id, instance_label) WHERE instance_label IS NOT NULL"
                )
                changes.append(f"created {LABEL_UNIQUE_INDEX}")
    return changes


async def create_instance(
    pool: Any,
    user_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    label: str | None,
    limit: int,
) -> tuple[InstanceRecord, bool]:
    """The user's instance labelled `label` (None: their primary, whichever it is), created
    when missing as `user_<uuid>` (their first) or `user_<uuid>_<n>` (the lowest free n); True
    when created now.  Raises InstanceLimit when the user already owns `limit` instances."""
    base = instance_name_for(user_id)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await ensure_auth_user(conn, user_id)
            # One creator per user at a time, on every node: the count, the free ordinal and
            # the insert below agree.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1::int, hashtext($2))", _USER_LOCK, str(user_id)
            )
            if label is None:
                primary = await find_by_user(conn, user_id)
                if primary is not None:
                    return primary, False
            else:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM whatsapp_instances"
                    " WHERE user_id = $1 AND instance_label = $2",
                    user_id,
                    label,
                )
                if row is not None:
                    return _record(row), False
            owned = await conn.fetchval(
                "SELECT count(*) FROM whatsapp_instances WHERE user_id = $1", user_id
            )
            if owned >= limit:
                raise InstanceLimit(
                    f"You already have {owned} WhatsApp instance(s), the most allowed here."
                )
            # Names already taken, whoever owns them (a stray legacy row may hold one).
            taken = await conn.fetch(
                "SELECT instance_name FROM whatsapp_instances WHERE starts_with(instance_name, $1)",
                base,
            )
            used = {ordinal_for_user(r["instance_name"], user_id) for r in taken}
            ordinal = next(n for n in range(1, 1000) if n not in used)
            name = instance_name_for(user_id, ordinal)
            # As in instances.ensure_instance: a new row has no session yet (`sessionless`).
            row = await conn.fetchrow(
                "INSERT INTO whatsapp_instances"
                " (instance_name, user_id, organization_id, instance_label, sessionless)"
                " VALUES ($1, $2, $3, $4, true) ON CONFLICT DO NOTHING RETURNING instance_name",
                name,
                user_id,
                organization_id,
                label,
            )
            if row is None:
                # Only the seed's unique index on user_id can refuse it (a 1:1 schema, the
                # user's first instance created meanwhile by a plain connect): that one.
                raise InstanceLimit("You already have a WhatsApp instance, the most allowed here.")
            # As for a plain connect: rows waiting under a new name were never this instance's.
            await inbox.retire(conn, name)
            found = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM whatsapp_instances WHERE instance_name = $1", name
            )
    return _record(found), True
