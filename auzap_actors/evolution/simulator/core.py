"""The simulator's state machine: instances, connection lifecycle, QR cycle.

Everything that changes state is synchronous (no checkpoint between a check and the
change), so concurrent requests cannot interleave inside one transition; only the
deliberate waits (``connect_wait_s``) and timers await.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import trio

from .model import (
    LOGOUT_CODES,
    RECONNECT_CODES,
    Instance,
    QrState,
    SimHTTPError,
    SimulatorConfig,
    WebhookSettings,
    default_settings,
    load_state,
    make_qr,
    now_iso,
    save_state,
    unauthorized,
)
from .tasks import Spawner, cancel_all
from .webhooks import WebhookEmitter

FAULT_MODES = ("none", "down", "slow", "error", "flaky")
QR_LIMIT_MESSAGE = "QR code limit reached, please login again"


@dataclass
class Faults:
    """Fault injection set by ``POST /_sim/faults`` (a full replacement each time).

    Modes apply to the REST routes only, never to ``/_sim``: ``down`` answers 503 with
    an HTML body (a dead upstream behind a proxy), ``slow`` sleeps ``latency_ms``
    before answering, ``error`` answers an Evolution-shaped 500, ``flaky`` answers 503
    with probability ``error_rate``. ``webhook_duplicates: n`` sends every webhook n
    extra times with an identical body, whatever the mode.
    """

    mode: str = "none"
    latency_ms: int = 0
    error_rate: float = 0.0
    webhook_duplicates: int = 0


class ControlError(Exception):
    """A ``/_sim`` request that does not fit the current state (answered as JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def boom_object(code: int) -> str:
    """``disconnectionObject``: the Boom error of the last disconnect, as a JSON string."""
    return json.dumps(
        {
            "error": {
                "isBoom": True,
                "isServer": code >= 500,
                "output": {"statusCode": code, "payload": {"statusCode": code}},
            },
            "date": now_iso(),
        }
    )


class Simulator:
    """In-memory Evolution server: the model plus its webhook emitter."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.instances: dict[str, Instance] = (
            load_state(config.state_file) if config.state_file is not None else {}
        )
        self.faults = Faults()
        self.sent: list[dict[str, Any]] = []
        self.presences: list[dict[str, Any]] = []  # /chat/sendPresence calls, oldest first
        self._dirty = trio.Event()
        self.requests_total = 0
        self.by_route: Counter[str] = Counter()
        # Requests being answered right now, and the most there ever were, per route: lets a
        # test prove a client never has more than N calls of a kind in flight.
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight: Counter[str] = Counter()
        self.by_instance: dict[str, Counter[str]] = {}
        self.server_url = config.server_url or "http://localhost:8080"
        self.spawner = Spawner("simulator")
        self.webhooks = WebhookEmitter(
            config,
            duplicates=lambda: self.faults.webhook_duplicates,
            server_url=lambda: self.server_url,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery for webhook deliveries and timers; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.webhooks.run)
            if self.config.state_file is not None:
                nursery.start_soon(self._writer)
            self.spawner.bind(nursery)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self.spawner.bind(None)
                self.spawner.cancel_all()

    @property
    def running(self) -> bool:
        return self.spawner.running

    # -- helpers -------------------------------------------------------------------

    def emit(self, inst: Instance, event: str, data: Any) -> None:
        self.webhooks.emit(inst, event, data)

    def persist(self) -> None:
        """Mark the state file stale; `_writer` saves it soon (one write per burst of
        changes, not one per change: the file holds every instance)."""
        if self.config.state_file is not None:
            self._dirty.set()

    async def _writer(self) -> None:
        assert self.config.state_file is not None
        try:
            while True:
                await self._dirty.wait()
                self._dirty = trio.Event()
                started = time.perf_counter()
                save_state(self.config.state_file, self.instances)
                # A write takes longer the more instances there are (10,000: ~0.1 s); pausing
                # 10x that keeps the writer under ~10 % of the simulator's CPU while changes
                # keep coming (thousands of webhook syncs at a service's boot).
                await trio.sleep(max(0.5, 10 * (time.perf_counter() - started)))
        finally:
            if self._dirty.is_set():
                save_state(self.config.state_file, self.instances)

    def get(self, name: str) -> Instance:
        inst = self.instances.get(name)
        if inst is None:
            raise SimHTTPError(404, [f'The "{name}" instance does not exist'])
        return inst

    def authorize(self, inst: Instance | None, key: str | None) -> None:
        """Global key everywhere; an instance's token only on its own routes."""
        if key and (key == self.config.api_key or (inst is not None and key == inst.token)):
            return
        raise unauthorized()

    def count_request(self, route: str, instance: str | None) -> None:
        self.requests_total += 1
        self.by_route[route] += 1
        if instance is not None:
            self.by_instance.setdefault(instance, Counter())[route] += 1
        self.in_flight[route] += 1
        self.peak_in_flight[route] = max(self.peak_in_flight[route], self.in_flight[route])

    def request_done(self, route: str) -> None:
        self.in_flight[route] = max(0, self.in_flight[route] - 1)

    def spawn_for(self, inst: Instance, fn: Any, *args: Any) -> trio.CancelScope:
        return self.spawner.spawn(fn, inst, *args, groups=(inst.tasks,))

    def _set_state(self, inst: Instance, state: str) -> None:
        # Any state change ends the pending QR cycle or reconnect timer.
        if inst.timer is not None:
            inst.timer.cancel()
            inst.timer = None
        inst.state = state
        inst.touch()
        self.persist()

    def _connection_update(self, inst: Instance, state: str, reason: int = 200) -> None:
        self.emit(
            inst,
            "connection.update",
            {"instance": inst.name, "state": state, "statusReason": reason},
        )

    # -- create --------------------------------------------------------------------

    def ensure_name_free(self, name: str) -> None:
        if name in self.instances:
            raise SimHTTPError(403, [f'This name "{name}" is already in use.'])

    def create(self, body: dict[str, Any]) -> Instance:
        """Insert a new instance (validated body). Sync, so two concurrent creates of
        one name cannot both pass the uniqueness check."""
        name = str(body["instanceName"])
        self.ensure_name_free(name)
        token = body.get("token")
        inst = Instance(
            name=name,
            token=str(token) if token else str(uuid.uuid4()).upper(),
            settings={
                **default_settings(),
                **{k: body[k] for k in default_settings() if k in body},
            },
        )
        number = body.get("number")
        inst.number = str(number) if number else None
        webhook = body.get("webhook")
        if isinstance(webhook, dict):
            inst.webhook = WebhookSettings.from_request(webhook, force_enabled=True)
        self.instances[name] = inst
        self.persist()
        self.emit(inst, "instance.create", {"instanceName": name, "instanceId": inst.id})
        return inst

    # -- connection lifecycle --------------------------------------------------------

    def start_connecting(self, inst: Instance) -> None:
        """A new socket: with a session it reopens silently, else the QR cycle starts."""
        self._set_state(inst, "connecting")
        self._connection_update(inst, "connecting")
        if inst.has_session:
            inst.timer = self.spawn_for(inst, self._reopen_later)
        else:
            self._new_qr(inst)
            inst.timer = self.spawn_for(inst, self._qr_cycle)

    def _new_qr(self, inst: Instance) -> None:
        count = inst.qr.count + 1
        inst.qr = make_qr(pairing=inst.pairing)
        inst.qr.count = count
        self.emit(
            inst,
            "qrcode.updated",
            {
                "qrcode": {
                    "instance": inst.name,
                    "pairingCode": inst.qr.pairing_code,
                    "code": inst.qr.code,
                    "base64": inst.qr.base64,
                }
            },
        )

    async def _qr_cycle(self, inst: Instance) -> None:
        while True:
            await trio.sleep(self.config.qr_interval_s)
            if inst.qr.count >= self.config.qr_limit:
                self._qr_limit(inst)
                return
            self._new_qr(inst)

    def _qr_limit(self, inst: Instance) -> None:
        self.emit(inst, "qrcode.updated", {"message": QR_LIMIT_MESSAGE, "statusCode": 500})
        refused: dict[str, Any] = {"instance": inst.name, "state": "refused", "statusReason": 428}
        if inst.owner_jid is not None:
            refused.update(
                wuid=inst.owner_jid,
                profileName=inst.profile_name,
                profilePictureUrl=inst.profile_pic_url,
            )
        self.emit(inst, "connection.update", refused)
        inst.qr = QrState()
        inst.pairing = False
        self._set_state(inst, "close")

    async def _reopen_later(self, inst: Instance) -> None:
        await trio.sleep(self.config.reconnect_delay_s)
        self.open(inst)

    def open(self, inst: Instance) -> None:
        self._set_state(inst, "open")
        inst.qr = QrState()
        inst.pairing = False
        inst.sender = inst.owner_jid
        self.emit(
            inst,
            "connection.update",
            {
                "instance": inst.name,
                "wuid": inst.owner_jid,
                "profileName": inst.profile_name,
                "profilePictureUrl": inst.profile_pic_url,
                "state": "open",
                "statusReason": 200,
            },
        )

    def final_close(self, inst: Instance, code: int) -> None:
        """The no-reconnect path (401/402/403/406, API logout): facts §5.4."""
        inst.disconnection_reason_code = code
        inst.disconnection_at = now_iso()
        inst.disconnection_object = boom_object(code)
        self.emit(
            inst,
            "status.instance",
            {
                "instance": inst.name,
                "status": "closed",
                "disconnectionAt": inst.disconnection_at,
                "disconnectionReasonCode": code,
                "disconnectionObject": inst.disconnection_object,
            },
        )
        self.emit(inst, "logout.instance", None)
        inst.has_session = False  # creds wiped: the next connect needs a new QR
        inst.qr = QrState()
        inst.pairing = False
        self._set_state(inst, "close")
        self._connection_update(inst, "close", code)

    async def connect(self, inst: Instance, number: str | None) -> dict[str, Any]:
        """``GET /instance/connect``: polymorphic answer per state (facts §2.3)."""
        if inst.state == "open":
            return {"instance": {"instanceName": inst.name, "state": "open"}}
        if inst.state == "close":
            inst.pairing = number is not None
            if number is not None:
                inst.number = number
            self.start_connecting(inst)
            # The real server waits 2 s for the socket and then returns whatever QR
            # it has, possibly only {"count": 0}.
            await trio.sleep(self.config.connect_wait_s)
        return inst.qr.rest_object()

    async def restart(self, inst: Instance) -> dict[str, Any]:
        """``POST /instance/restart``. A closed instance without a session is an error
        (the caller turns it into the 200 ``{error: true}`` quirk); a closed one that
        kept its session is reopened, as the simulator's contract promises for drops
        with ``auto_reconnect: false``."""
        if inst.state == "close" and not inst.has_session:
            raise SimHTTPError(400, [f'The "{inst.name}" instance is not connected'])
        if inst.state != "close":
            self.start_connecting(inst)  # close the socket and connect again
        return await self.connect(inst, None)

    def logout(self, inst: Instance) -> None:
        if inst.state == "close":
            raise SimHTTPError(400, [f'The "{inst.name}" instance is not connected'])
        self.final_close(inst, 401)

    def delete(self, inst: Instance) -> None:
        if inst.state in ("open", "connecting"):
            self.final_close(inst, 401)
        self.emit(inst, "instance.delete", {"instanceName": inst.name, "instanceId": inst.id})
        self.emit(inst, "remove.instance", None)
        cancel_all(inst.tasks)
        inst.timer = None
        self.instances.pop(inst.name, None)
        self.webhooks.close_instance(inst.name)
        self.persist()

    def set_webhook(self, inst: Instance, body: dict[str, Any]) -> WebhookSettings:
        hook = WebhookSettings.from_request(body, force_enabled=False)
        if inst.webhook is not None:  # upsert keyed by instance: keep the row identity
            hook.id, hook.created_at = inst.webhook.id, inst.webhook.created_at
        inst.webhook = hook
        inst.touch()
        self.persist()
        return hook

    # -- control API -----------------------------------------------------------------

    def scan(self, inst: Instance, phone: str, profile_name: str | None) -> None:
        if inst.state != "connecting" or inst.has_session:
            raise ControlError(
                409, f'instance "{inst.name}" is not waiting for a QR scan (state {inst.state})'
            )
        inst.has_session = True
        inst.owner_jid = f"{phone}@s.whatsapp.net"
        inst.number = phone
        inst.profile_name = profile_name if profile_name is not None else f"Sim {phone[-4:]}"
        self.open(inst)

    def disconnect(self, inst: Instance, code: int, auto_reconnect: bool) -> None:
        if inst.state == "close":
            raise ControlError(409, f'instance "{inst.name}" is already closed')
        if code in RECONNECT_CODES:
            if auto_reconnect:
                # Evolution sends no close event for these: just connecting, then open
                # (or the QR cycle goes on, when there was no session yet).
                self.start_connecting(inst)
            else:
                inst.qr = QrState()
                self._set_state(inst, "close")
        elif code in LOGOUT_CODES or code in (402, 406):
            self.final_close(inst, code)
        else:
            raise ControlError(400, f"unsupported disconnect code {code}")

    def reset(self) -> None:
        self.spawner.cancel_all()
        self.webhooks.reset()
        self.instances.clear()
        self.faults = Faults()
        self.sent.clear()
        self.presences.clear()
        self.requests_total = 0
        self.by_route.clear()
        self.in_flight.clear()
        self.peak_in_flight.clear()
        self.by_instance.clear()
        self.persist()

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": inst.name,
                "id": inst.id,
                "state": inst.state,
                "has_session": inst.has_session,
                "owner_jid": inst.owner_jid,
                "number": inst.number,
                "profile_name": inst.profile_name,
                "qr_count": inst.qr.count,
                "webhook_url": inst.webhook.url if inst.webhook else None,
                "webhook_enabled": inst.webhook.enabled if inst.webhook else None,
            }
            for inst in self.instances.values()
        ]

    def faults_json(self) -> dict[str, Any]:
        return asdict(self.faults)
