"""Test helpers: real HTTP clients, real WebSocket clients, tokens."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import WebSocketConnection

from auzap_actors.actors.messages import Barrier
from auzap_actors.core.health import HealthState
from auzap_actors.core.state import InstanceState, Status
from auzap_actors.core.views import InstanceSnapshot
from auzap_actors.serve import Running
from auzap_actors.store.db import open_pool
from auzap_actors.web.auth import mint_user_token

from .conftest import ADMIN_TOKEN, JWT_SECRET, SIM_API_KEY, WEBHOOK_SECRET
from .payloads import envelope, text_message

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# How our webhook routes authenticate Evolution (the shared secret of CONTRACT §5).
WEBHOOK_HEADERS = {"X-Auzap-Webhook-Secret": WEBHOOK_SECRET}


def user_token(user_id: uuid.UUID, org: uuid.UUID | None = None, **claims: Any) -> str:
    if not claims:
        return mint_user_token(JWT_SECRET, user_id, org)
    payload: dict[str, Any] = {"sub": str(user_id), "exp": int(time.time()) + 3600}
    payload.update(claims)
    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def decode_png_data_url(data_url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix), data_url[:40]
    return base64.b64decode(data_url[len(prefix) :])


async def next_frame(ws: WebSocketConnection, timeout: float = 5.0) -> dict[str, Any]:
    with trio.fail_after(timeout):
        frame: dict[str, Any] = json.loads(await ws.get_message())
        return frame


async def wait_frame(
    ws: WebSocketConnection,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 5.0,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The first frame matching `predicate`; frames before it go to `seen`."""
    with trio.fail_after(timeout):
        while True:
            frame = json.loads(await ws.get_message())
            if predicate(frame):
                return frame  # type: ignore[no-any-return]
            if seen is not None:
                seen.append(frame)


async def barrier(service: Running, name: str, timeout: float = 5.0) -> None:
    """Returns once the actor of `name` has handled everything queued for it so far: every
    frame that work publishes is then in its subscribers' queues.

    A webhook answered 200 before counts too: the inbox rings its doorbell when the row
    commits, in the same scheduler tick that wakes the request's handler, and the supervisor
    passes the ring on to the actor's mailbox (DrainInbox) before the answer can reach a
    client of this process."""
    await service.actors.supervisor.call(name, Barrier(), timeout)


async def frames_until_pong(ws: WebSocketConnection, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Send a ping; the frames that come before its pong.  The socket queues the pong behind
    every frame already queued for it, so these are all the frames pending when it was sent."""
    await ws.send_message(json.dumps({"type": "ping"}))
    frames = []
    while (frame := await next_frame(ws, timeout))["type"] != "pong":
        frames.append(frame)
    return frames


async def no_frame(
    ws: WebSocketConnection, service: Running, name: str, timeout: float = 5.0
) -> None:
    """Nothing is coming to `ws` from the work of `name`'s actor so far: after a barrier, a
    ping's pong must be the very next frame (any other frame is the unexpected one)."""
    await barrier(service, name, timeout)
    await ws.send_message(json.dumps({"type": "ping"}))
    frame = await next_frame(ws, timeout)
    assert frame == {"type": "pong"}, f"unexpected frame: {frame}"


async def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll an async or sync check until it returns a truthy value."""
    with trio.fail_after(timeout):
        while True:
            result = check()
            if hasattr(result, "__await__"):
                result = await result
            if result:
                return result
            await trio.sleep(interval)


def http(base_url: str, timeout: float = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=timeout)


async def sim_post_ok(sim: httpx.AsyncClient, path: str, json: Any = None) -> httpx.Response:
    """POST to the simulator's control API (`/_sim/...`), which must answer 2xx: a refused
    scan fails here, with the simulator's reason, instead of later as a timeout."""
    answer = await sim.post(path, json=json)
    assert answer.is_success, f"POST {path} -> {answer.status_code}: {answer.text}"
    return answer


async def open_instance(
    client: httpx.AsyncClient,
    sim: httpx.AsyncClient | str,
    user: uuid.UUID,
    phone: str,
    *,
    org: uuid.UUID | None = None,
    timeout: float = 5.0,
) -> str:
    """Connect `user`'s instance through the API (`client` is the service's), scan its QR in
    the simulator as `phone`, and wait until the API shows it open; returns its name.

    `sim` is the simulator's URL, or a client of it (to share one among many instances).
    The connect's 200 comes once the simulator is waiting for the scan, so the scan must
    succeed at once."""
    token = user_token(user, org)
    answer = await client.post("/api/whatsapp/connect", headers=auth(token))
    assert answer.status_code == 200, answer.text
    name = f"user_{user}"
    scan = f"/_sim/instances/{name}/scan"
    if isinstance(sim, str):
        async with http(sim) as own:
            await sim_post_ok(own, scan, {"phone": phone})
    else:
        await sim_post_ok(sim, scan, {"phone": phone})

    async def is_open() -> bool:
        view = (await client.get("/api/whatsapp/instance", headers=auth(token))).json()
        return bool(view["status"] == "open")

    await eventually(is_open, timeout=timeout)
    return name


async def fetch_rows(database_url: str, query: str, *args: Any) -> list[dict[str, Any]]:
    """The rows of one query, on a connection of its own (the service's pool is not ours)."""
    async with open_pool(database_url, min_size=1, max_size=1) as pool:
        return [dict(r.items()) for r in await pool.fetch(query, *args)]


async def inbox_pending(database_url: str, name: str) -> int:
    """How many stored webhook rows of `name` are not applied (nor settled) yet."""
    rows = await fetch_rows(
        database_url,
        "SELECT count(*) AS n FROM webhook_inbox WHERE instance_name = $1 AND applied_at IS NULL",
        name,
    )
    return int(rows[0]["n"])


async def inbox_settled(database_url: str, name: str) -> bool:
    """Whether every stored webhook row of `name` has been applied (or settled)."""
    return await inbox_pending(database_url, name) == 0


def socket_url(service: Running, token: str) -> str:
    """The browser socket's URL (`/ws?token=`) of a running service."""
    return service.url.replace("http://", "ws://") + f"/ws?token={token}"


async def qr_webhook_applied(database_url: str, name: str) -> bool:
    """Whether the simulator's `qrcode.updated` webhook for `name` was applied (a test that
    forges connection webhooks waits for it, so that its own are the last word)."""
    rows = await fetch_rows(
        database_url,
        "SELECT applied_at IS NOT NULL AS done FROM webhook_inbox"
        " WHERE instance_name = $1 AND event = 'qrcode.updated'",
        name,
    )
    return rows == [{"done": True}]


async def store_messages(
    client: httpx.AsyncClient,
    database_url: str,
    name: str,
    chats: tuple[str, ...],
    per_chat: int,
    *,
    batch: int = 50,
) -> None:
    """Post `per_chat` messages to each chat as `messages.upsert` webhooks; wait until stored."""
    prefix = uuid.uuid4().hex[:8].upper()
    items = [
        text_message(
            f"3EB0{prefix}{c:02d}{i:06d}",
            jid,
            f"mensagem {i} — olá",
            from_me=i % 3 == 0,
            timestamp=1_795_000_000 + i,
        )
        for c, jid in enumerate(chats)
        for i in range(per_chat)
    ]

    async def post(item: dict[str, Any]) -> None:
        body = envelope("messages.upsert", name, item)
        answer = await client.post("/api/webhook/whatsapp", json=body, headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200, answer.text

    # One message per `messages.upsert` (as Evolution sends them), batch deliveries at once.
    for start in range(0, len(items), batch):
        async with trio.open_nursery() as nursery:
            for item in items[start : start + batch]:
                nursery.start_soon(post, item)
    async with open_pool(database_url, min_size=1, max_size=1) as pool:

        async def stored() -> bool:
            count = await pool.fetchval(
                "SELECT count(*) FROM messages WHERE instance_name = $1", name
            )
            return bool(count == len(items))

        await eventually(stored, timeout=60, interval=0.1)


def spawn_service(
    database_url: str, data_dir: Path, **env_extra: str
) -> tuple[subprocess.Popen[str], str]:
    """`auzap-actors serve` as a child process (for tests that SIGKILL it): the process and
    the URL it printed.  The test's own AUZAP_/EVOLUTION_ variables never leak into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUZAP_", "EVOLUTION_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "AUZAP_DATA_DIR": str(data_dir),
            "AUZAP_PORT": "0",
            "AUZAP_JWT_SECRET": JWT_SECRET,
            "AUZAP_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "AUZAP_ADMIN_TOKEN": ADMIN_TOKEN,
            "EVOLUTION_API_KEY": SIM_API_KEY,
            **env_extra,
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "auzap_actors", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    assert ready, "the service did not start"
    line = proc.stdout.readline()
    assert "serving on" in line, line
    return proc, line.rsplit(" ", 1)[1].strip()


# ---- /metrics, parsed with prometheus-client's own parser --------------------------------

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    answer = await client.get("/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        assert family.name.startswith(("auzap_", "process_", "python_")), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, *, exposed: bool = True, **labels: str) -> float:
    """A sample's value; 0 for a labelled child that does not exist yet (a labelled metric
    without any child is not exposed at all: `exposed=False` accepts that too)."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        assert not exposed or any(n == name for n, _ in samples), f"{name} is not exposed"
        return 0.0
    return samples[key]


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def open_snapshot(health: HealthState | None = None) -> InstanceSnapshot:
    """An instance open and healthy, as the step sees it (for tests of the pure core)."""
    return InstanceSnapshot(
        "user_x",
        "u1",
        "o1",
        state=InstanceState(Status.OPEN, phone_number="5511999999999"),
        health=health or HealthState(status="healthy", healthy_since=0.0),
        in_evolution=True,
        full_check_in=3,
    )
