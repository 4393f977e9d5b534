"""The no-op route `auzap-actors bench ingest` compares the webhook route with
(`AUZAP_BENCH_NOOP=1` only): the same framework path, body read, JSON answer, and nothing else."""

from __future__ import annotations

from quart import Blueprint, request

bench = Blueprint("bench", __name__)


@bench.post("/_bench/noop")
async def noop() -> dict[str, bool]:
    await request.get_data(cache=False, as_text=False)
    return {"accepted": True, "duplicate": False}
