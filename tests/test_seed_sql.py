"""The seed's SQL runs unchanged on the standalone schema (no Supabase): its "all instances and
their users" query joins profiles.email, which migration 0007 adds to the standalone profiles
table only; a Supabase-shaped auth schema is left alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import trio_asyncio

from auzap_actors.store.db import open_pool
from auzap_actors.store.migrate import migrate

from .conftest import _with_database
from .helpers import fetch_rows

# The seed's queries, as an operator runs them.
ALL_INSTANCES_AND_USERS = """
SELECT wi.instance_name, wi.status, wi.is_connected, wi.phone_number, wi.created_at,
       p.email, p.full_name
FROM whatsapp_instances wi
LEFT JOIN profiles p ON p.id = wi.user_id
ORDER BY wi.created_at DESC
"""
WITHOUT_USER = "SELECT * FROM whatsapp_instances WHERE user_id IS NULL"


async def test_the_seeds_queries_run_on_the_standalone_schema(database_url: str) -> None:
    user = uuid.uuid4()
    await fetch_rows(
        database_url,
        "WITH u AS (INSERT INTO auth.users (id, email) VALUES ($1, 'ana@example.com')"
        " RETURNING id), p AS (INSERT INTO profiles (id, full_name, email)"
        " SELECT id, 'Ana Souza', 'ana@example.com' FROM u RETURNING id)"
        " INSERT INTO whatsapp_instances (instance_name, user_id) SELECT $2, id FROM p"
        " RETURNING id",
        user,
        f"user_{user}",
    )
    await fetch_rows(
        database_url,
        "INSERT INTO whatsapp_instances (instance_name) VALUES ('legacy') RETURNING id",
    )
    rows = await fetch_rows(database_url, ALL_INSTANCES_AND_USERS)
    by_name = {r["instance_name"]: r for r in rows}
    assert by_name[f"user_{user}"]["email"] == "ana@example.com"
    assert by_name[f"user_{user}"]["full_name"] == "Ana Souza"
    assert by_name["legacy"]["email"] is None
    assert [r["instance_name"] for r in await fetch_rows(database_url, WITHOUT_USER)] == ["legacy"]
    comments = await fetch_rows(
        database_url,
        "SELECT obj_description('auth.users'::regclass, 'pg_class') AS users,"
        " obj_description('profiles'::regclass, 'pg_class') AS profiles",
    )
    assert comments[0]["users"].startswith("auzap-actors standalone")
    assert comments[0]["profiles"].startswith("auzap-actors standalone")


@pytest.fixture
async def empty_database(pg_dsn: str, aio_loop: Any) -> AsyncIterator[str]:
    """A database without our schema (not the migrated template)."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    admin = await trio_asyncio.aio_as_trio(asyncpg.connect)(pg_dsn)
    try:
        await trio_asyncio.aio_as_trio(admin.execute)(f"CREATE DATABASE {name}")
        yield _with_database(pg_dsn, name)
    finally:
        await trio_asyncio.aio_as_trio(admin.execute)(
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )
        await trio_asyncio.aio_as_trio(admin.close)()


async def test_supabases_tables_are_left_alone(empty_database: str) -> None:
    async with open_pool(empty_database, min_size=1, max_size=1) as pool:
        # Supabase's shape, in brief: auth.users with its many columns, a project's profiles.
        await pool.execute(
            "CREATE SCHEMA auth; CREATE TABLE auth.users (id UUID PRIMARY KEY, email TEXT,"
            " aud TEXT, encrypted_password TEXT, created_at TIMESTAMPTZ);"
            " CREATE TABLE profiles (id UUID PRIMARY KEY REFERENCES auth.users(id),"
            " organization_id UUID, full_name TEXT, avatar_url TEXT)"
        )
        await migrate(pool)
        columns = await pool.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles'"
        )
        comment = await pool.fetchval("SELECT obj_description('auth.users'::regclass, 'pg_class')")
    assert {c["column_name"] for c in columns} == {
        "id",
        "organization_id",
        "full_name",
        "avatar_url",
    }
    assert comment is None
