"""Many instances at once for the `actors` and `health` scenarios: rows written with one SQL
statement (the API would take minutes for 100k), and the simulator's matching state file.

The rows are what the service itself writes for a user's instance (`user_<uuid>`, the user in
auth.users); the service only learns about them at its next start, which is what the
scenarios time.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from pathlib import Path

import asyncpg

from ..core.naming import instance_name_for

_SEED_SQL = """
WITH users AS (
  INSERT INTO auth.users (id) SELECT u FROM unnest($1::uuid[]) AS u RETURNING id
)
INSERT INTO whatsapp_instances
  (instance_name, user_id, status, is_connected, phone_number, evolution_instance_id,
   state_since)
SELECT 'user_' || id::text, id, $2, $2 = 'open',
       CASE WHEN $2 = 'open' THEN '5511' || lpad((abs(hashtext(id::text)) % 1000000000)::text,
                                                   9, '0') END,
       CASE WHEN $3 THEN gen_random_uuid()::text END, now()
FROM users
"""


def new_users(count: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(count)]


async def _seed(dsn: str, users: list[uuid.UUID], status: str, in_evolution: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # In slices: one statement with 100k array elements is fine, but a slice keeps the
        # transaction (and the WAL it writes at once) modest.
        for start in range(0, len(users), 20_000):
            await conn.execute(_SEED_SQL, users[start : start + 20_000], status, in_evolution)
        await conn.execute("ANALYZE whatsapp_instances")
    finally:
        await conn.close()


def seed_instances(
    dsn: str, users: list[uuid.UUID], *, status: str = "disconnected", in_evolution: bool = False
) -> None:
    """One instance row per user (`disconnected` and never created at Evolution by default:
    its actor's boot then needs the database only)."""
    asyncio.run(_seed(dsn, users, status, in_evolution))


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value: int = await conn.fetchval("SELECT count(*) FROM whatsapp_instances")
        return value
    finally:
        await conn.close()


def count_instances(dsn: str) -> int:
    return asyncio.run(_count(dsn))


def simulator_state(path: Path, users: list[uuid.UUID]) -> Path:
    """A simulator state file holding one open, logged-in instance per user (what Evolution
    holds for connected numbers); the simulator loads it at its start."""
    instances = []
    for n, user in enumerate(users):
        name = instance_name_for(user)
        number = f"5511{n:09d}"
        instances.append(
            {
                "name": name,
                "id": str(uuid.uuid4()),
                "token": secrets.token_hex(16),
                "state": "open",
                "has_session": True,
                "owner_jid": f"{number}@s.whatsapp.net",
                "profile_name": f"Bench {n}",
                "number": number,
                "webhook": None,
            }
        )
    path.write_text(json.dumps({"instances": instances}))
    return path
