"""Plans of statements as PostgreSQL makes them: the custom plan (planned with the parameter
values, as for a statement's first runs) and the generic plan (what a prepared statement gets
once PostgreSQL stops planning per value), as EXPLAIN's JSON, and their nodes."""

from __future__ import annotations

import json
import uuid
from typing import Any


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += plan_nodes(child)
    return found


def _parse(explained: Any) -> dict[str, Any]:
    # The pool decodes json columns; a bare connection would hand back text.
    document = json.loads(explained) if isinstance(explained, str) else explained
    plan: dict[str, Any] = document[0]["Plan"]
    return plan


async def custom_plan(conn: Any, sql: str, args: tuple[Any, ...]) -> dict[str, Any]:
    return _parse(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))


def _literal(value: Any, type_name: str) -> str:
    if value is None:
        return f"NULL::{type_name}"
    text = str(value).replace("'", "''")
    return f"'{text}'::{type_name}"


async def generic_plan(conn: Any, sql: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The plan a prepared statement gets once PostgreSQL stops planning per parameter values
    (after five runs, when the generic plan looks no worse): forced here.  EXPLAIN EXECUTE
    takes no bound parameters, so the values are spelled as literals."""
    name = f"q_{uuid.uuid4().hex[:8]}"
    await conn.execute(f"PREPARE {name} AS {sql}")
    try:
        types = await conn.fetchval(
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = $1", name
        )
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        params = ", ".join(_literal(v, t) for v, t in zip(args, types, strict=True))
        return _parse(await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {name}({params})"))
    finally:
        await conn.execute("RESET plan_cache_mode")
        await conn.execute(f"DEALLOCATE {name}")
