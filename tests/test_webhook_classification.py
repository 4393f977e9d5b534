"""The dry-run route and the actor classify every event alike: each file of the replay corpus is
asked about (`POST /api/webhook/test`), then delivered for real, and what the dry run said it
would do is what the actor did with the stored row."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from auzap_actors.core.webhook import dedup_key, parse_envelope
from auzap_actors.store import instances
from auzap_actors.store.db import open_pool

from .conftest import ServiceRunner
from .helpers import WEBHOOK_HEADERS, eventually, fetch_rows, http

CORPUS = sorted((Path(__file__).parent / "corpus").glob("[0-9][0-9]_*.json"))
USER = uuid.UUID("7d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6")
NAME = f"user_{USER}"


def _outcome_for(would: str) -> str:
    """The inbox outcome a dry-run answer promises."""
    if would == "store as unhandled":
        return "unhandled"
    assert would.startswith("store and apply "), would
    return "applied"


async def test_dry_run_and_actor_agree_on_every_corpus_file(runner: ServiceRunner) -> None:
    assert len(CORPUS) > 50
    service = await runner.start()
    async with open_pool(runner.database_url, min_size=1, max_size=1) as pool:
        await instances.ensure_instance(pool, NAME, USER, None)
    promised: dict[str, str] = {}
    async with http(service.url) as client:
        for path in CORPUS:
            body: dict[str, Any] = json.loads(path.read_text())["envelope"]
            body["instance"] = NAME
            dry = await client.post("/api/webhook/test", json=body, headers=WEBHOOK_HEADERS)
            if dry.status_code == 400:
                promised[path.name] = "invalid"
            else:
                assert dry.status_code == 200, (path.name, dry.text)
                assert dry.json()["dry_run"] is True
                promised[path.name] = _outcome_for(dry.json()["would"])
            real = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
            assert real.status_code == 200, (path.name, real.text)
            key = dedup_key(parse_envelope(body))

            async def settled(key: str = key) -> str | None:
                rows = await fetch_rows(
                    runner.database_url,
                    "SELECT outcome FROM webhook_inbox WHERE dedup_key = $1"
                    " AND applied_at IS NOT NULL",
                    key,
                )
                return rows[0]["outcome"] if rows else None

            assert await eventually(settled) == promised[path.name], path.name
    # The corpus exercises all three routes.
    assert {"applied", "unhandled"} <= set(promised.values())
