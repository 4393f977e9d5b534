"""The Evolution v2 REST routes of the simulator (facts §2).

Guard order as in the real router: unknown instance -> 404 before the API key is
looked at; then ``apikey`` (global key, or the instance's own token on its routes);
then body validation.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from . import messages
from .core import Simulator
from .model import INTEGRATION, Instance, SimHTTPError
from .validation import (
    validate_create,
    validate_send_presence,
    validate_send_text,
    validate_set_webhook,
)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, ensure_ascii=False), status=status, content_type="application/json"
    )


async def _body() -> Any:
    # Express' body-parser hands an empty object to the controller for no body.
    body = await request.get_json(force=True, silent=True)
    return {} if body is None else body


def register_rest(app: QuartTrio, sim: Simulator) -> None:
    def instance_for(name: str) -> Instance:
        inst = sim.get(name)
        sim.authorize(inst, request.headers.get("apikey"))
        return inst

    @app.get("/")
    async def root() -> Response:
        return json_response(
            {
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": "2.3.6-sim",
                "clientName": "evolution_exchange",
                "manager": f"{sim.server_url}/manager",
                "documentation": "https://doc.evolution-api.com",
                "whatsappWebVersion": "2.3000.0",
            }
        )

    @app.post("/instance/create")
    async def create() -> Response:
        body = await _body()
        name = body.get("instanceName") if isinstance(body, dict) else None
        if isinstance(name, str):
            sim.ensure_name_free(name)  # 403 comes before the key check
        sim.authorize(None, request.headers.get("apikey"))
        body = validate_create(body)
        inst = sim.create(body)
        if body.get("qrcode"):
            await sim.connect(inst, body.get("number"))
        # The real answer echoes only the legacy flat keys, so with the nested webhook
        # object it is usually {}.
        legacy = ("webhookUrl", "webhookHeaders", "webhookByEvents", "webhookBase64")
        hook_echo = {key: body[key] for key in legacy if key in body}
        answer: dict[str, Any] = {
            "instance": {
                "instanceName": inst.name,
                "instanceId": inst.id,
                "integration": INTEGRATION,
                "webhookWaBusiness": None,
                "accessTokenWaBusiness": "",
                "status": inst.state,
            },
            "hash": inst.token,
            "webhook": hook_echo,
            "websocket": {"enabled": False},
            "rabbitmq": {"enabled": False},
            "nats": {"enabled": False},
            "sqs": {"enabled": False},
            "settings": inst.settings,
        }
        if body.get("qrcode"):
            answer["qrcode"] = inst.qr.rest_object()
        return json_response(answer, 201)

    @app.get("/instance/connect/<instance>")
    async def connect(instance: str) -> Response:
        inst = instance_for(instance)
        return json_response(await sim.connect(inst, request.args.get("number")))

    @app.get("/instance/connectionState/<instance>")
    async def connection_state(instance: str) -> Response:
        inst = instance_for(instance)
        return json_response({"instance": {"instanceName": inst.name, "state": inst.state}})

    @app.get("/instance/fetchInstances")
    async def fetch_instances() -> Response:
        key = request.headers.get("apikey")
        name, inst_id = request.args.get("instanceName"), request.args.get("instanceId")
        if key == sim.config.api_key:
            # By name: one lookup, not a scan of every instance (health checks ask this).
            if name is None:
                visible = list(sim.instances.values())
            else:
                one = sim.instances.get(name)
                visible = [one] if one is not None else []
        else:
            # An instance token only sees its own row (DATABASE_SAVE_DATA_INSTANCE=true).
            visible = [i for i in sim.instances.values() if key and i.token == key]
            if not visible:
                sim.authorize(None, key)
        number = request.args.get("number")
        if name is not None:
            visible = [i for i in visible if i.name == name]
            if not visible:
                raise SimHTTPError(404, [f'Instance "{name}" not found'])
        if inst_id is not None:
            visible = [i for i in visible if i.id == inst_id]
            if not visible:
                raise SimHTTPError(404, [f'Instance "{inst_id}" not found'])
        if number is not None:
            visible = [i for i in visible if i.number == number]
        return json_response([i.fetch_row() for i in visible])

    @app.post("/instance/restart/<instance>")
    async def restart(instance: str) -> Response:
        inst = instance_for(instance)
        try:
            return json_response(await sim.restart(inst))
        except SimHTTPError:
            # The real controller catches its own (plain-object) exception and answers
            # 200 with error.toString(), i.e. "[object Object]" (facts §2.1).
            return json_response({"error": True, "message": "[object Object]"})

    @app.delete("/instance/logout/<instance>")
    async def logout(instance: str) -> Response:
        sim.logout(instance_for(instance))
        return json_response(
            {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
        )

    @app.delete("/instance/delete/<instance>")
    async def delete(instance: str) -> Response:
        sim.delete(instance_for(instance))
        return json_response(
            {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
        )

    @app.post("/webhook/set/<instance>")
    async def set_webhook(instance: str) -> Response:
        inst = instance_for(instance)
        hook = sim.set_webhook(inst, validate_set_webhook(await _body()))
        return json_response(hook.row(inst.id), 201)

    @app.get("/webhook/find/<instance>")
    async def find_webhook(instance: str) -> Response:
        inst = instance_for(instance)
        return json_response(inst.webhook.row(inst.id) if inst.webhook else None)

    @app.post("/message/sendText/<instance>")
    async def send_text(instance: str) -> Response:
        inst = instance_for(instance)
        number, text = validate_send_text(await _body())
        return json_response(messages.send_text(sim, inst, number, text), 201)

    @app.post("/chat/sendPresence/<instance>")
    async def send_presence(instance: str) -> Response:
        inst = instance_for(instance)
        number, presence, delay = validate_send_presence(await _body())
        return json_response(messages.send_presence(sim, inst, number, presence, delay), 201)
