"""What the instance migration (core/legacy.py) reads from the database, and the two changes
it makes: fill a row's missing `user_id`, and create the row of an adopted Evolution instance.

Both changes are guarded so that running them twice, or beside a live service, is harmless:
the `user_id` is only written where it is still NULL, an adopted row is only inserted where
the name and the user have none (the unique indexes make a race end in "already there").
Neither touches a column a running actor writes, nor Evolution.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..core.legacy import Adopt, FillUserId, Remote, Row
from .instances import ensure_auth_user

# Evolution's connectionStatus -> our status, for an adopted row until its actor looks.
_STATUS = {"open": "open", "connecting": "connecting"}

# Pending events for a name no row owned when they came: flagged `orphan` by the supervisor,
# or not flagged yet (no service ran since).  Walks the partial index of pending rows.
_ORPHANS = (
    "SELECT i.instance_name AS name, count(*) AS count FROM webhook_inbox i"
    " WHERE i.applied_at IS NULL AND (i.outcome = 'orphan' OR NOT EXISTS ("
    "  SELECT 1 FROM whatsapp_instances w WHERE w.instance_name = i.instance_name))"
    " GROUP BY i.instance_name"
)


async def auth_is_standalone(db: Any) -> bool:
    """True where `auth.users` is the minimal table of migration 0001 (no Supabase): users
    may then be created from a name, as the service creates them from a valid token.  In
    Supabase, a user who is not in auth.users does not exist, and is never made up."""
    comment = await db.fetchval("SELECT obj_description('auth.users'::regclass, 'pg_class')")
    return bool(comment and comment.startswith("auzap-actors standalone"))


async def read_rows(db: Any) -> list[Row]:
    rows = await db.fetch(
        "SELECT instance_name, user_id::text AS user_id FROM whatsapp_instances"
        " ORDER BY created_at, instance_name"
    )
    return [Row(r["instance_name"], r["user_id"]) for r in rows]


async def read_orphans(db: Any) -> dict[str, int]:
    return {r["name"]: int(r["count"]) for r in await db.fetch(_ORPHANS)}


async def known_users(db: Any, candidates: set[str]) -> set[str]:
    """Those of `candidates` that auth.users has."""
    ids = [uuid.UUID(c) for c in candidates]
    rows = await db.fetch("SELECT id::text AS id FROM auth.users WHERE id = ANY($1::uuid[])", ids)
    return {r["id"] for r in rows}


async def fill_user_id(pool: Any, change: FillUserId, *, create_user: bool) -> bool:
    """Set the row's user_id if it is still NULL; False when there was nothing to do."""
    user = uuid.UUID(change.user_id)
    async with pool.acquire() as conn, conn.transaction():
        if create_user:
            await ensure_auth_user(conn, user)
        status: str = await conn.execute(
            "UPDATE whatsapp_instances SET user_id = $2, updated_at = now()"
            " WHERE instance_name = $1 AND user_id IS NULL",
            change.name,
            user,
        )
    return status.split()[-1] == "1"


async def adopt(pool: Any, change: Adopt, *, create_user: bool) -> bool:
    """Create the row of an Evolution instance that has none; False when a row for its name
    or its user appeared meanwhile.  Events already waiting under the name stay pending:
    they are this very instance's, applied in order when its actor starts."""
    remote: Remote = change.remote
    user = uuid.UUID(change.user_id)
    status = _STATUS.get(remote.connection_status, "disconnected")
    async with pool.acquire() as conn, conn.transaction():
        if create_user:
            await ensure_auth_user(conn, user)
        row = await conn.fetchrow(
            "INSERT INTO whatsapp_instances (instance_name, user_id, status, is_connected,"
            " phone_number, profile_name, evolution_instance_id, state_since)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, now()) ON CONFLICT DO NOTHING"
            " RETURNING instance_name",
            remote.name,
            user,
            status,
            status == "open",
            remote.number,
            remote.profile_name,
            remote.evolution_id or "unknown",
        )
    return row is not None
