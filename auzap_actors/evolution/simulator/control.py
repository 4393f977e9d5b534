"""The ``/_sim`` control API (CONTRACT §7): no API key, plain JSON errors."""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from . import messages
from .core import FAULT_MODES, ControlError, Faults, Simulator
from .model import DISCONNECT_CODES, Instance
from .rest import json_response


async def _body() -> dict[str, Any]:
    body = await request.get_json(force=True, silent=True)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


def _phone(value: Any, field: str) -> str:
    digits = "".join(ch for ch in str(value or "") if ch.isdigit())
    if not digits:
        raise ControlError(400, f'"{field}" must be a phone number (digits)')
    return digits


def parse_faults(body: dict[str, Any]) -> Faults:
    """A full replacement: keys left out go back to their defaults."""
    mode = body.get("mode", "none")
    if mode not in FAULT_MODES:
        raise ControlError(400, f"mode must be one of {', '.join(FAULT_MODES)}")
    try:
        faults = Faults(
            mode=mode,
            latency_ms=int(body.get("latency_ms", 0)),
            error_rate=float(body.get("error_rate", 0.0)),
            webhook_duplicates=int(body.get("webhook_duplicates", 0)),
        )
    except (TypeError, ValueError) as exc:
        raise ControlError(400, f"bad fault settings: {exc}") from exc
    if faults.latency_ms < 0 or faults.webhook_duplicates < 0:
        raise ControlError(400, "latency_ms and webhook_duplicates must be >= 0")
    if not 0.0 <= faults.error_rate <= 1.0:
        raise ControlError(400, "error_rate must be between 0 and 1")
    return faults


def register_control(app: QuartTrio, sim: Simulator) -> None:
    def instance(name: str) -> Instance:
        inst = sim.instances.get(name)
        if inst is None:
            raise ControlError(404, f'instance "{name}" does not exist')
        return inst

    @app.post("/_sim/instances/<name>/scan")
    async def scan(name: str) -> Response:
        body = await _body()
        inst = instance(name)
        profile = body.get("profile_name", body.get("push_name"))
        sim.scan(
            inst, _phone(body.get("phone"), "phone"), str(profile) if profile is not None else None
        )
        return json_response({"instance": name, "state": inst.state, "wuid": inst.owner_jid})

    @app.post("/_sim/instances/<name>/disconnect")
    async def disconnect(name: str) -> Response:
        body = await _body()
        inst = instance(name)
        code = body.get("code", 428)
        if not isinstance(code, int) or code not in DISCONNECT_CODES:
            raise ControlError(400, f"code must be one of {sorted(DISCONNECT_CODES)}")
        sim.disconnect(inst, code, bool(body.get("auto_reconnect", True)))
        return json_response({"instance": name, "state": inst.state})

    @app.post("/_sim/instances/<name>/inbound")
    async def inbound(name: str) -> Response:
        body = await _body()
        inst = instance(name)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise ControlError(400, '"text" must be a non-empty string')
        push_name = body.get("push_name")
        message_id = messages.inbound(
            sim,
            inst,
            _phone(body.get("from"), "from"),
            text,
            str(push_name) if push_name is not None else None,
        )
        return json_response({"id": message_id})

    @app.get("/_sim/faults")
    async def get_faults() -> Response:
        return json_response(sim.faults_json())

    @app.post("/_sim/faults")
    async def set_faults() -> Response:
        sim.faults = parse_faults(await _body())
        return json_response(sim.faults_json())

    @app.get("/_sim/sent")
    async def sent() -> Response:
        return json_response(sim.sent)

    @app.get("/_sim/presences")
    async def presences() -> Response:
        return json_response(sim.presences)

    @app.get("/_sim/requests")
    async def requests() -> Response:
        return json_response(
            {
                "total": sim.requests_total,
                "by_route": dict(sim.by_route),
                "by_instance": {name: dict(c) for name, c in sim.by_instance.items()},
                "peak_in_flight": dict(sim.peak_in_flight),
            }
        )

    @app.get("/_sim/instances")
    async def instances() -> Response:
        return json_response(sim.describe())

    @app.get("/_sim/webhooks")
    async def webhooks() -> Response:
        # Recent delivery attempts, newest last: handy when a demo "loses" an event.
        return json_response(list(sim.webhooks.log))

    @app.post("/_sim/reset")
    async def reset() -> Response:
        sim.reset()
        return json_response({"reset": True})
