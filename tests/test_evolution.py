"""Evolution client against the Evolution simulator, over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypercorn.trio
import jwt
import pytest
import trio
from hypercorn.config import Config
from quart import Response, request
from quart_trio import QuartTrio

from auzap_actors.core.events import WEBHOOK_EVENTS
from auzap_actors.evolution import (
    EvolutionBadRequest,
    EvolutionClient,
    EvolutionError,
    EvolutionForbidden,
    EvolutionNotFound,
    EvolutionServerError,
    EvolutionUnauthorized,
    EvolutionUnavailable,
    WebhookConfig,
)
from auzap_actors.evolution.client import parse_connect
from auzap_actors.evolution.errors import parse_messages
from auzap_actors.evolution.retry import RetryPolicy
from auzap_actors.evolution.simulator import (
    Simulator,
    SimulatorConfig,
    create_simulator_app,
    serve_simulator,
)
from auzap_actors.evolution.simulator.webhooks import should_deliver

from .helpers import sim_post_ok

API_KEY = "global-test-key"
NO_RETRY = RetryPolicy(attempts=1)  # single answers here; retries: test_evolution_retry
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WAIT_S = 3.0  # generous upper bound for a webhook to arrive; normally a few ms
JWT_KEY = "a-jwt-key-of-at-least-32-bytes-long!"


# -- webhook receiver ------------------------------------------------------------


@dataclass
class Hook:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes

    @property
    def event(self) -> str:
        return str(self.body["event"])

    @property
    def data(self) -> Any:
        return self.body["data"]


class Receiver:
    """Captures webhooks; ``plan`` holds statuses to answer before falling back to 200."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.plan: list[int] = []
        self.url = ""
        self._changed = trio.Event()

    def app(self) -> QuartTrio:
        app = QuartTrio("receiver")

        @app.post("/hook")
        @app.post("/hook/<slug>")
        async def hook(slug: str | None = None) -> Response:
            raw = await request.get_data(as_text=False)
            assert isinstance(raw, bytes)
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.hooks.append(Hook(request.path, headers, json.loads(raw), raw))
            self._changed.set()
            self._changed = trio.Event()
            status = self.plan.pop(0) if self.plan else 200
            return Response("ok", status=status)

        return app

    def events(self, name: str | None = None) -> list[Hook]:
        return [h for h in self.hooks if name is None or h.event == name]

    async def wait_for(self, predicate: Callable[[list[Hook]], bool]) -> None:
        with trio.fail_after(WAIT_S):
            while not predicate(self.hooks):
                await self._changed.wait()

    async def wait_event(self, name: str, count: int = 1) -> list[Hook]:
        await self.wait_for(lambda hooks: len([h for h in hooks if h.event == name]) >= count)
        return self.events(name)

    def connection_states(self) -> list[tuple[str, int]]:
        return [(h.data["state"], h.data["statusReason"]) for h in self.events("connection.update")]


async def _serve_app(nursery: trio.Nursery, app: QuartTrio) -> str:
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(hypercorn.trio.serve, app, config)
    return binds[0]


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> Receiver:
    rec = Receiver()
    rec.url = await _serve_app(nursery, rec.app()) + "/hook"
    return rec


StartSim = Callable[..., Awaitable[str]]


@pytest.fixture
def start_sim(nursery: trio.Nursery) -> StartSim:
    async def start(**overrides: Any) -> str:
        settings: dict[str, Any] = {
            "api_key": API_KEY,
            "qr_interval_s": 30.0,
            "webhook_timeout_s": 2.0,
            "webhook_retry_attempts": 3,
            "webhook_retry_initial_s": 0.02,
            "webhook_retry_max_s": 0.05,
            "reconnect_delay_s": 0.02,
            "ack_delay_s": 0.01,
        }
        settings.update(overrides)
        url: str = await nursery.start(serve_simulator, SimulatorConfig(**settings))
        return url

    return start


@pytest.fixture
async def sim_url(start_sim: StartSim) -> str:
    return await start_sim()


@pytest.fixture
async def client(sim_url: str) -> AsyncIterator[EvolutionClient]:
    async with EvolutionClient(sim_url, API_KEY, timeout=5.0, retry=NO_RETRY) as evo:
        yield evo


def hook_config(rec: Receiver, **kw: Any) -> WebhookConfig:
    settings: dict[str, Any] = {"events": WEBHOOK_EVENTS, "headers": {"x-auzap-secret": "s3cr3t"}}
    settings.update(kw)
    return WebhookConfig(url=rec.url, **settings)


async def open_instance(
    client: EvolutionClient,
    control: httpx.AsyncClient,
    rec: Receiver,
    name: str,
    phone: str = "5511999990001",
) -> None:
    await client.create_instance(name, webhook=hook_config(rec))
    await client.connect(name)
    answer = await control.post(f"/_sim/instances/{name}/scan", json={"phone": phone})
    assert answer.status_code == 200
    await rec.wait_for(
        lambda hooks: any(
            h.event == "connection.update" and h.data["state"] == "open" for h in hooks
        )
    )


# -- lifecycle -----------------------------------------------------------------------


async def test_create_stores_webhook_and_delivers_instance_create(
    client: EvolutionClient, receiver: Receiver, sim_url: str
) -> None:
    created = await client.create_instance("u_1", webhook=hook_config(receiver))
    assert created.instance_name == "u_1"
    assert created.status == "close"
    assert re.fullmatch(r"[0-9A-F-]{36}", created.token)
    assert re.fullmatch(r"[0-9a-f-]{36}", created.instance_id)

    stored = await client.find_webhook("u_1")
    assert stored is not None
    assert stored.url == receiver.url and stored.enabled
    assert stored.events == WEBHOOK_EVENTS
    assert stored.headers == {"x-auzap-secret": "s3cr3t"}

    [hook] = await receiver.wait_event("instance.create")
    assert hook.headers["x-auzap-secret"] == "s3cr3t"
    assert hook.data == {"instanceName": "u_1", "instanceId": created.instance_id}
    assert hook.body["instance"] == "u_1"
    assert hook.body["destination"] == receiver.url
    assert hook.body["server_url"] == sim_url
    assert hook.body["apikey"] is None
    assert hook.body["date_time"].endswith("Z")
    assert "sender" not in hook.body  # never connected yet


async def test_create_raw_shape_and_token(sim_url: str, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=sim_url, headers={"apikey": API_KEY}) as http:
        answer = await http.post(
            "/instance/create",
            json={
                "instanceName": "raw",
                "integration": "WHATSAPP-BAILEYS",
                "token": "TOK-1",
                "webhook": {"url": receiver.url, "events": []},
            },
        )
        assert answer.status_code == 201
        body = answer.json()
        assert body["hash"] == "TOK-1"
        assert body["instance"]["status"] == "close"
        assert body["instance"]["webhookWaBusiness"] is None
        assert body["webhook"] == {}
        assert body["settings"]["rejectCall"] is False
        # events [] stores every allowed event
        found = await http.get("/webhook/find/raw")
        assert "APPLICATION_STARTUP" in found.json()["events"]
        missing = await http.post("/instance/create", json={"instanceName": "x2"})
        assert missing.status_code == 400
        assert missing.json()["response"]["message"] == ["Invalid integration"]
    # The instance token works on its own routes only.
    async with EvolutionClient(sim_url, "TOK-1") as own:
        assert await own.connection_state("raw") == "close"
        with pytest.raises(EvolutionUnauthorized):
            await own.create_instance("other", webhook=hook_config(receiver))


async def test_connect_qr_scan_open_and_fetch(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.create_instance("u_2", webhook=hook_config(receiver))
    result = await client.connect("u_2")
    assert result.state == "connecting"
    assert result.qr is not None and result.qr.count == 1
    assert result.qr.base64 is not None and result.qr.code is not None
    prefix = "data:image/png;base64,"
    assert result.qr.base64.startswith(prefix)
    assert base64.b64decode(result.qr.base64[len(prefix) :]).startswith(PNG_SIGNATURE)
    assert len(result.qr.code.split(",")) == 4

    [qr_hook] = await receiver.wait_event("qrcode.updated")
    assert qr_hook.data["qrcode"]["code"] == result.qr.code
    assert qr_hook.data["qrcode"]["base64"] == result.qr.base64
    assert "count" not in qr_hook.data["qrcode"]
    assert receiver.connection_states() == [("connecting", 200)]

    again = await client.connect("u_2")  # polling while connecting returns the same QR
    assert again.qr is not None and again.qr.code == result.qr.code
    assert await client.connection_state("u_2") == "connecting"

    scan = await control.post(
        "/_sim/instances/u_2/scan", json={"phone": "5511988887777", "push_name": "Ana"}
    )
    assert scan.status_code == 200
    await receiver.wait_for(lambda _: len(receiver.events("connection.update")) == 2)
    opened = receiver.events("connection.update")[-1]
    assert opened.data["state"] == "open"
    assert opened.data["wuid"] == "5511988887777@s.whatsapp.net"
    assert opened.data["profileName"] == "Ana"
    assert opened.body["sender"] == "5511988887777@s.whatsapp.net"

    assert await client.connection_state("u_2") == "open"
    now_open = await client.connect("u_2")
    assert now_open.state == "open" and now_open.qr is None
    [info] = await client.fetch_instances(name="u_2")
    assert info.connection_status == "open"
    assert info.owner_jid == "5511988887777@s.whatsapp.net"
    assert info.number == "5511988887777"
    assert info.profile_name == "Ana"
    assert info.disconnection_reason_code is None

    second_scan = await control.post("/_sim/instances/u_2/scan", json={"phone": "1"})
    assert second_scan.status_code == 409


async def test_send_text_record_webhooks_and_acks(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await open_instance(client, control, receiver, "u_3")
    record = await client.send_text("u_3", "5511977776666", "olá")
    message_id = record["key"]["id"]
    assert re.fullmatch(r"3EB0[0-9A-F]{16}", message_id)
    assert record["key"]["remoteJid"] == "5511977776666@s.whatsapp.net"
    assert record["key"]["fromMe"] is True
    assert record["status"] == "PENDING"
    assert record["pushName"] == "Você"
    assert record["message"] == {"conversation": "olá"}
    assert record["messageType"] == "conversation"
    assert isinstance(record["messageTimestamp"], int)

    [sent_hook] = await receiver.wait_event("send.message")
    assert sent_hook.data["key"]["id"] == message_id
    updates = await receiver.wait_event("messages.update", 2)
    assert [(u.data["keyId"], u.data["status"]) for u in updates] == [
        (message_id, "SERVER_ACK"),
        (message_id, "DELIVERY_ACK"),
    ]

    sent = (await control.get("/_sim/sent")).json()
    assert [(s["instance"], s["number"], s["text"], s["id"]) for s in sent] == [
        ("u_3", "5511977776666", "olá", message_id)
    ]

    with pytest.raises(EvolutionBadRequest) as not_on_wa:
        await client.send_text("u_3", "abc", "hi")
    assert json.loads(not_on_wa.value.messages[0])["exists"] is False


async def test_inbound_message_events(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await open_instance(client, control, receiver, "u_4")
    answer = await control.post(
        "/_sim/instances/u_4/inbound",
        json={"from": "5511955554444", "text": "oi", "push_name": "Bia"},
    )
    assert answer.status_code == 200
    message_id = answer.json()["id"]
    await receiver.wait_event("chats.upsert")
    tail = [h.event for h in receiver.hooks][-3:]
    assert tail == ["messages.upsert", "contacts.upsert", "chats.upsert"]
    upsert = receiver.events("messages.upsert")[0].data
    assert upsert["key"] == {
        "remoteJid": "5511955554444@s.whatsapp.net",
        "fromMe": False,
        "id": message_id,
    }
    assert upsert["pushName"] == "Bia"
    assert upsert["status"] == "DELIVERY_ACK"
    assert upsert["message"]["conversation"] == "oi"
    assert upsert["source"] == "android"
    assert isinstance(receiver.events("contacts.upsert")[0].data, dict)
    assert isinstance(receiver.events("chats.upsert")[0].data, list)


async def test_jwt_key_header_becomes_bearer_token(
    client: EvolutionClient, receiver: Receiver
) -> None:
    config = hook_config(receiver, headers={"jwt_key": JWT_KEY, "x-other": "1"})
    await client.create_instance("u_5", webhook=config)
    [hook] = await receiver.wait_event("instance.create")
    assert "jwt_key" not in hook.headers
    assert hook.headers["x-other"] == "1"
    scheme, token = hook.headers["authorization"].split(" ", 1)
    assert scheme == "Bearer"
    claims = jwt.decode(token, JWT_KEY, algorithms=["HS256"])
    assert claims["app"] == "evolution" and claims["action"] == "webhook"
    assert claims["exp"] - claims["iat"] == 600
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "wrong-key-also-32-bytes-long-xxxxxx", algorithms=["HS256"])


# -- errors ------------------------------------------------------------------------


async def test_error_mapping(
    client: EvolutionClient, sim_url: str, receiver: Receiver, control: httpx.AsyncClient
) -> None:
    with pytest.raises(EvolutionNotFound) as not_found:
        await client.connection_state("ghost")
    assert not_found.value.status == 404
    assert not_found.value.messages == ['The "ghost" instance does not exist']
    # Unknown instance is a 404 even with a wrong key: existence is checked first.
    async with EvolutionClient(sim_url, "wrong") as bad:
        with pytest.raises(EvolutionNotFound):
            await bad.connect("ghost")

    await client.create_instance("dup", webhook=hook_config(receiver))
    with pytest.raises(EvolutionForbidden) as forbidden:
        await client.create_instance("dup", webhook=hook_config(receiver))
    assert str(forbidden.value) == (
        'Evolution POST /instance/create -> 403: This name "dup" is already in use.'
    )
    assert not forbidden.value.retryable

    async with EvolutionClient(sim_url, "wrong") as bad:
        with pytest.raises(EvolutionUnauthorized) as unauthorized:
            await bad.connection_state("dup")
    assert unauthorized.value.messages == ["Unauthorized"]
    assert "wrong" not in str(unauthorized.value)

    with pytest.raises(EvolutionServerError) as quirk:  # 200 {error: true}
        await client.restart("dup")
    assert quirk.value.status == 200
    with pytest.raises(EvolutionBadRequest) as not_connected:
        await client.logout("dup")
    assert not_connected.value.messages == ['The "dup" instance is not connected']
    with pytest.raises(EvolutionBadRequest):
        await client.send_text("dup", "5511911112222", "hi")
    with pytest.raises(EvolutionBadRequest) as bad_event:
        await client.set_webhook("dup", hook_config(receiver, events=("QRCODE_UPDATED", "NOPE")))
    assert bad_event.value.messages[0].startswith(
        "webhook.events[1] is not one of enum values: APPLICATION_STARTUP,QRCODE_UPDATED,"
    )

    raw = await control.get("/instance/nothing-here")
    assert raw.status_code == 404
    assert raw.json() == {
        "status": 404,
        "error": "Not Found",
        "response": {"message": ["Cannot GET /instance/nothing-here"]},
    }

    await sim_post_ok(control, "/_sim/faults", {"mode": "down"})
    with pytest.raises(EvolutionUnavailable) as down:
        await client.connection_state("dup")
    assert down.value.status == 503 and down.value.retryable
    await sim_post_ok(control, "/_sim/faults", {"mode": "error"})
    with pytest.raises(EvolutionServerError) as error:
        await client.connection_state("dup")
    assert error.value.status == 500
    assert (await control.get("/_sim/faults")).json()["mode"] == "error"
    await sim_post_ok(control, "/_sim/faults", {"mode": "flaky", "error_rate": 1.0})
    with pytest.raises(EvolutionUnavailable):
        await client.connection_state("dup")
    await sim_post_ok(control, "/_sim/faults", {"mode": "none"})
    assert await client.connection_state("dup") == "close"


async def test_transport_errors_are_unavailable() -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with EvolutionClient(f"http://127.0.0.1:{port}", API_KEY, retry=NO_RETRY) as evo:
        with pytest.raises(EvolutionUnavailable) as refused:
            await evo.connection_state("x")
    assert refused.value.status is None
    assert "unavailable" in str(refused.value)


async def test_slow_fault_hits_client_timeout(
    client: EvolutionClient, sim_url: str, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.create_instance("slow", webhook=hook_config(receiver))
    await sim_post_ok(control, "/_sim/faults", {"mode": "slow", "latency_ms": 300})
    async with EvolutionClient(sim_url, API_KEY, timeout=0.1, retry=NO_RETRY) as impatient:
        with pytest.raises(EvolutionUnavailable):
            await impatient.connection_state("slow")


async def test_client_parsing_with_mock_transport() -> None:
    assert parse_connect({"instance": {"instanceName": "a", "state": "open"}}).qr is None
    bare = parse_connect({"count": 0})
    assert bare.state == "connecting" and bare.qr is not None and bare.qr.code is None
    both = parse_connect(
        {
            "instance": {"instanceName": "a", "status": "connecting"},
            "qrcode": {"code": "c", "count": 2},
        }
    )
    assert both.state == "connecting" and both.qr is not None and both.qr.count == 2
    assert parse_messages({"response": {"message": [{"jid": "x", "exists": False}]}}) == [
        '{"exists":false,"jid":"x"}'
    ]

    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path.startswith("/instance/connectionState"):
            return httpx.Response(200, json={"instance": {"instanceName": "a"}})
        return httpx.Response(502, text="bad gateway")

    async with EvolutionClient("http://evo", "k", transport=httpx.MockTransport(handler)) as evo:
        assert await evo.connection_state("a b") == "unknown"
        with pytest.raises(EvolutionUnavailable):
            await evo.logout("a")
    assert seen[0].headers["apikey"] == "k"
    assert seen[0].url.raw_path == b"/instance/connectionState/a%20b"
    assert issubclass(EvolutionUnavailable, EvolutionError)


# -- disconnects and QR ----------------------------------------------------------


async def test_disconnect_428_reconnects_silently(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await open_instance(client, control, receiver, "u_6")
    receiver.hooks.clear()
    answer = await control.post(
        "/_sim/instances/u_6/disconnect", json={"code": 428, "auto_reconnect": True}
    )
    assert answer.status_code == 200
    await receiver.wait_event("connection.update", 2)
    assert receiver.connection_states() == [("connecting", 200), ("open", 200)]
    assert [h.event for h in receiver.hooks] == ["connection.update", "connection.update"]
    assert await client.connection_state("u_6") == "open"


async def test_drop_without_auto_reconnect_reopens_without_qr(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await open_instance(client, control, receiver, "u_7")
    receiver.hooks.clear()
    await sim_post_ok(
        control, "/_sim/instances/u_7/disconnect", {"code": 428, "auto_reconnect": False}
    )
    assert await client.connection_state("u_7") == "close"
    await trio.sleep(0.05)
    assert receiver.hooks == []  # reconnectable codes send no close event
    result = await client.connect("u_7")
    assert result.qr is not None and result.qr.code is None  # {"count": 0}
    await receiver.wait_event("connection.update", 2)
    assert receiver.connection_states() == [("connecting", 200), ("open", 200)]
    assert receiver.events("qrcode.updated") == []


async def test_disconnect_401_final_close(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await open_instance(client, control, receiver, "u_8")
    receiver.hooks.clear()
    await sim_post_ok(control, "/_sim/instances/u_8/disconnect", {"code": 401})
    await receiver.wait_event("connection.update")
    assert [h.event for h in receiver.hooks] == [
        "status.instance",
        "logout.instance",
        "connection.update",
    ]
    status = receiver.hooks[0].data
    assert status["status"] == "closed" and status["disconnectionReasonCode"] == 401
    assert isinstance(json.loads(status["disconnectionObject"]), dict)
    assert receiver.hooks[1].data is None
    assert receiver.connection_states() == [("close", 401)]
    [info] = await client.fetch_instances(name="u_8")
    assert info.connection_status == "close"
    assert info.disconnection_reason_code == 401
    fresh = await client.connect("u_8")  # credentials gone: a new QR is needed
    assert fresh.qr is not None and fresh.qr.count == 1 and fresh.qr.code


async def test_logout_and_delete(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await open_instance(client, control, receiver, "u_9")
    receiver.hooks.clear()
    await client.logout("u_9")
    await receiver.wait_event("connection.update")
    assert [h.event for h in receiver.hooks] == [
        "status.instance",
        "logout.instance",
        "connection.update",
    ]
    receiver.hooks.clear()
    await client.delete_instance("u_9")
    await receiver.wait_event("remove.instance")
    assert [h.event for h in receiver.hooks] == ["instance.delete", "remove.instance"]
    with pytest.raises(EvolutionNotFound):
        await client.fetch_instances(name="u_9")


async def test_qr_rotation_and_limit(start_sim: StartSim, receiver: Receiver) -> None:
    url = await start_sim(qr_interval_s=0.05, qr_limit=3)
    async with EvolutionClient(url, API_KEY) as evo:
        await evo.create_instance("u_10", webhook=hook_config(receiver))
        await evo.connect("u_10")
        await receiver.wait_for(
            lambda _: any(
                h.data.get("state") == "refused" for h in receiver.events("connection.update")
            )
        )
        qr_hooks = receiver.events("qrcode.updated")
        codes = [h.data["qrcode"]["code"] for h in qr_hooks[:3]]
        assert len(set(codes)) == 3
        assert qr_hooks[3].data == {
            "message": "QR code limit reached, please login again",
            "statusCode": 500,
        }
        assert len(qr_hooks) == 4
        assert receiver.connection_states() == [("connecting", 200), ("refused", 428)]
        assert await evo.connection_state("u_10") == "close"
        again = await evo.connect("u_10")
        assert again.qr is not None and again.qr.count == 1


async def test_create_with_qrcode_pairing_and_restart(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver, sim_url: str
) -> None:
    async with httpx.AsyncClient(base_url=sim_url, headers={"apikey": API_KEY}) as http:
        answer = await http.post(
            "/instance/create",
            json={
                "instanceName": "u_15",
                "integration": "WHATSAPP-BAILEYS",
                "qrcode": True,
                "webhook": {"url": receiver.url, "events": ["QRCODE_UPDATED"]},
            },
        )
    body = answer.json()
    assert body["instance"]["status"] == "connecting"
    assert body["qrcode"]["count"] == 1 and body["qrcode"]["base64"].startswith("data:image/png")

    await client.create_instance("u_16", webhook=hook_config(receiver))
    paired = await client.connect("u_16", number="5511944443333")
    assert paired.qr is not None and paired.qr.pairing_code is not None
    assert len(paired.qr.pairing_code) == 8

    restarted = await client.restart("u_16")  # connecting: new socket, next QR
    assert restarted.state == "connecting"
    assert restarted.qr is not None and restarted.qr.count == 2

    await sim_post_ok(control, "/_sim/instances/u_16/scan", {"phone": "5511944443333"})
    receiver.hooks.clear()
    reopened = await client.restart("u_16")  # open: reconnects with its session
    assert reopened.state == "connecting"
    await receiver.wait_event("connection.update", 2)
    assert receiver.connection_states() == [("connecting", 200), ("open", 200)]


# -- webhook delivery rules -------------------------------------------------------------


async def test_webhook_retry_after_500(client: EvolutionClient, receiver: Receiver) -> None:
    receiver.plan = [500]
    await client.create_instance("u_11", webhook=hook_config(receiver))
    hooks = await receiver.wait_event("instance.create", 2)
    assert hooks[0].raw == hooks[1].raw  # same body re-sent
    await trio.sleep(0.1)
    assert len(receiver.events("instance.create")) == 2  # success stops retrying


async def test_webhook_non_retryable_401(client: EvolutionClient, receiver: Receiver) -> None:
    receiver.plan = [401]
    await client.create_instance("u_12", webhook=hook_config(receiver))
    await receiver.wait_event("instance.create")
    await trio.sleep(0.15)  # several retry delays
    assert len(receiver.events("instance.create")) == 1


async def test_filtering_by_events_and_duplicates(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.create_instance("u_13", webhook=hook_config(receiver))
    await receiver.wait_event("instance.create")
    stored = await client.set_webhook(
        "u_13", hook_config(receiver, events=("CONNECTION_UPDATE",), by_events=True)
    )
    assert stored.events == ("CONNECTION_UPDATE",) and stored.by_events
    await sim_post_ok(control, "/_sim/faults", {"webhook_duplicates": 2})
    await client.connect("u_13")
    copies = await receiver.wait_event("connection.update", 3)
    assert {h.path for h in copies} == {"/hook/connection-update"}
    assert len({h.raw for h in copies}) == 1
    assert receiver.events("qrcode.updated") == []  # filtered out

    disabled = await client.set_webhook("u_13", hook_config(receiver, enabled=False))
    assert disabled.events == () and not disabled.enabled
    assert not should_deliver(list(WEBHOOK_EVENTS), "groups.update")  # the GROUP_UPDATE typo
    assert should_deliver(["GROUP_PARTICIPANTS_UPDATE"], "group-participants.update")


# -- counters, concurrency, persistence --------------------------------------------------


async def test_request_counters(
    client: EvolutionClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.create_instance("u_14", webhook=hook_config(receiver))
    for _ in range(3):
        await client.connection_state("u_14")
    await sim_post_ok(control, "/_sim/faults", {"mode": "down"})
    with pytest.raises(EvolutionUnavailable):
        await client.connection_state("u_14")
    await sim_post_ok(control, "/_sim/faults", {"mode": "none"})
    counts = (await control.get("/_sim/requests")).json()
    route = "GET /instance/connectionState/{instance}"
    assert counts["by_route"] == {"POST /instance/create": 1, route: 4}
    assert counts["total"] == 5
    assert counts["by_instance"] == {"u_14": {route: 4}}
    await sim_post_ok(control, "/_sim/reset")
    assert (await control.get("/_sim/requests")).json()["total"] == 0
    assert (await control.get("/_sim/instances")).json() == []


async def test_concurrent_creates_make_one_instance(
    client: EvolutionClient, receiver: Receiver
) -> None:
    outcomes: list[str] = []

    async def create() -> None:
        try:
            await client.create_instance("same", webhook=hook_config(receiver))
            outcomes.append("created")
        except EvolutionForbidden:
            outcomes.append("forbidden")

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(create)
    assert sorted(outcomes) == ["created"] + ["forbidden"] * 19
    assert len(await client.fetch_instances()) == 1


async def test_state_file_survives_restart(tmp_path: Path, receiver: Receiver) -> None:
    state = tmp_path / "sim.json"
    config = SimulatorConfig(api_key=API_KEY, state_file=state, reconnect_delay_s=0.01)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_simulator, config)
        async with EvolutionClient(url, API_KEY) as evo, httpx.AsyncClient(base_url=url) as http:
            await open_instance(evo, http, receiver, "keep")
        nursery.cancel_scope.cancel()
    assert state.exists()
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_simulator, config)
        async with EvolutionClient(url, API_KEY) as evo:
            [info] = await evo.fetch_instances()
            assert (info.name, info.connection_status) == ("keep", "open")
            assert await evo.find_webhook("keep") is not None
        nursery.cancel_scope.cancel()


async def test_app_starts_its_simulator_when_served_alone() -> None:
    sim = Simulator(SimulatorConfig(api_key=API_KEY))
    app = create_simulator_app(sim)
    async with app.test_app() as test_app:
        http = test_app.test_client()
        answer = await http.post(
            "/instance/create",
            headers={"apikey": API_KEY},
            json={
                "instanceName": "alone",
                "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": "http://127.0.0.1:9/unused", "events": ["INSTANCE_CREATE"]},
            },
        )
        assert answer.status_code == 201
        assert sim.running
        connect = await http.get("/instance/connect/alone", headers={"apikey": API_KEY})
        assert (await connect.get_json())["count"] == 1
