"""The `ingest --vs-baseline` reference server, run as its own process
(`python -m auzap_actors.bench.baseline --port N`, DATABASE_URL in the environment).

A plain FastAPI + uvicorn + asyncpg app, as such a service is usually written: the same route
and secret header as the service's webhook route, one INSERT per request into its own table of
the same database (the same unique key, so a re-delivered body is a no-op there too), then
200.  Nothing else: no envelope checks, no batching, no actors.  Needs the optional `bench`
extra (fastapi, uvicorn[standard]).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, HTTPException, Request

_TABLE = """
CREATE TABLE IF NOT EXISTS bench_baseline_inbox (
  id BIGSERIAL PRIMARY KEY,
  dedup_key TEXT NOT NULL UNIQUE,
  instance_name TEXT NOT NULL,
  event TEXT NOT NULL,
  payload JSONB NOT NULL,
  received_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)
"""
_INSERT = (
    "INSERT INTO bench_baseline_inbox (dedup_key, instance_name, event, payload)"
    " VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (dedup_key) DO NOTHING RETURNING id"
)


def create_app(dsn: str, secret: str) -> FastAPI:
    state: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=4, max_size=16)
        async with pool.acquire() as conn:
            await conn.execute(_TABLE)
        state["pool"] = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/webhook/whatsapp")
    async def webhook(request: Request) -> dict[str, Any]:
        given = request.headers.get("x-auzap-webhook-secret", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise HTTPException(401, "bad secret")
        body = await request.body()
        try:
            envelope = json.loads(body)
            instance, event = str(envelope["instance"]), str(envelope["event"])
        except (ValueError, KeyError, TypeError):
            raise HTTPException(400, "not a webhook envelope") from None
        key = hashlib.sha256(body).hexdigest()
        row = await state["pool"].fetchval(_INSERT, key, instance, event, body.decode())
        return {"accepted": True, "duplicate": row is None}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="auzap_actors.bench.baseline")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = create_app(os.environ["DATABASE_URL"], os.environ["AUZAP_WEBHOOK_SECRET"])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
