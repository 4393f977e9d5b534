"""`GET /openapi.json` and schemathesis against the live service.

The document must describe every route the app serves; schemathesis then generates requests
for each operation from it (valid data, and data that breaks the schema), sends them over real
HTTP with valid credentials (a user JWT, the admin token, the webhook secret), and checks that
no answer is a 5xx, that every status is documented for its operation and that every JSON
answer matches its documented schema.  The WebSocket upgrades (`/ws`, `/admin/ws`) are left
out: schemathesis speaks plain HTTP only.

`AUZAP_SCHEMATHESIS_EXAMPLES` sets the examples per operation and mode (default 25); the
examples are the same on every run unless `AUZAP_SCHEMATHESIS_RANDOM` is set.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, cast

import hypothesis
import pytest
import requests
import schemathesis
import trio
from hypothesis import HealthCheck, Phase
from quart_trio import QuartTrio
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from auzap_actors.actors.facade import Actors
from auzap_actors.web.app import create_app
from auzap_actors.web.context import WebContext
from auzap_actors.web.models import MAX_PROMPT, MAX_TEXT
from auzap_actors.web.openapi import build_document, served_routes
from auzap_actors.web.operations import OPERATIONS

from .conftest import ADMIN_TOKEN, WEBHOOK_SECRET, ServiceRunner, make_settings
from .helpers import auth, http, open_instance, sim_post_ok, user_token

EXAMPLES = int(os.environ.get("AUZAP_SCHEMATHESIS_EXAMPLES", "25"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


def _app(tmp_path: Path, *, demo: bool) -> QuartTrio:
    settings = make_settings("postgresql://127.0.0.1:9/unused", tmp_path)
    if demo:
        settings = dataclasses.replace(settings, demo=True, evolution_api_url=None)
    # Building the app starts nothing; its routes are all this test reads.
    return create_app(WebContext(settings, cast(Actors, None)))


@pytest.mark.parametrize("demo", [False, True])
def test_every_served_route_is_documented(tmp_path: Path, demo: bool) -> None:
    served = served_routes(_app(tmp_path, demo=demo))
    documented = {(op.method, op.path) for op in OPERATIONS}
    assert served - documented == set(), "routes missing from web/operations.py"
    doc = build_document(served)
    in_doc = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert in_doc == served & documented
    for path in (
        "/api/whatsapp/connect",
        "/api/whatsapp/messages",
        "/api/whatsapp/settings",
        "/api/whatsapp/conversations/{conversation_id}/messages",
        "/api/whatsapp/export",
        "/api/webhook/test",
        "/ws",
        "/admin/tree",
        "/healthz",
        "/readyz",
    ):
        assert path in doc["paths"], path
    assert ("/api/demo/login" in doc["paths"]) is demo
    # schemathesis reads it as a valid OpenAPI 3.1 document.
    schema = schemathesis.openapi.from_dict(doc)
    assert len(list(schema.get_all_operations())) == len(in_doc)


async def test_the_document_is_served_and_built_from_the_request_models(
    runner: ServiceRunner, tmp_path: Path
) -> None:
    service = await runner.start()
    async with http(service.url) as client:
        answer = await client.get("/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    doc = answer.json()
    assert doc == build_document(served_routes(_app(tmp_path, demo=False)))
    assert doc["openapi"] == "3.1.0"
    schemas = doc["components"]["schemas"]
    assert doc["components"]["securitySchemes"]["webhookSecret"] == {
        **doc["components"]["securitySchemes"]["webhookSecret"],
        "type": "apiKey",
        "in": "header",
        "name": "X-Auzap-Webhook-Secret",
    }
    # The bounds the server enforces are the ones the document states.
    settings = schemas["SettingsChange"]
    assert settings["additionalProperties"] is False and settings["minProperties"] == 1
    assert settings["properties"]["auto_reply_prompt"]["maxLength"] == MAX_PROMPT
    message = schemas["SendMessage"]
    assert message["required"] == ["to", "text"]
    assert message["properties"]["text"]["maxLength"] == MAX_TEXT
    send = doc["paths"]["/api/whatsapp/messages"]["post"]
    assert send["security"] == [{"userBearer": []}]
    assert {"202", "400", "401", "409", "503"} <= set(send["responses"])
    page = doc["paths"]["/api/whatsapp/conversations"]["get"]["parameters"]
    assert [p["name"] for p in page] == ["limit", "before", "instance"]
    assert page[0]["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}


def _headers_for(security: list[dict[str, Any]], user_jwt: str) -> dict[str, str]:
    names = {name for requirement in security for name in requirement}
    if "userBearer" in names:
        return auth(user_jwt)
    if "adminBearer" in names:
        return auth(ADMIN_TOKEN)
    if "webhookSecret" in names:
        return {"X-Auzap-Webhook-Secret": WEBHOOK_SECRET}
    return {}


def _fuzz_one(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    path_parameters: dict[str, str] | None = None,
) -> int:
    """Bounded examples of one operation in one mode; raises on the first failed check."""
    sent = 0
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=os.environ.get("AUZAP_SCHEMATHESIS_RANDOM") is None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        pass  # nothing breaks this operation's schema in this mode
    return sent


def _destructive(operation: Any) -> bool:
    """Operations that take the user's instance away: run last, so the others meet it open."""
    return operation.method.upper() == "DELETE" or operation.path.endswith(("/logout", "/stop"))


def _fuzz(
    base_url: str, user_jwt: str, known: dict[str, dict[str, str]], tag: str | None = None
) -> tuple[list[str], dict[str, int]]:
    """Runs in a worker thread (schemathesis is synchronous): failures, cases per operation.

    `known` gives real path parameters for some operations (the user's conversation, the
    user's own webhook route): one more positive pass of those reaches past the 404s.  `tag`
    keeps the operations of one tag only."""
    # from_dict, not from_url: from_url leaves the document's own route out of the run.
    document = requests.get(f"{base_url}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    counts: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in sorted(operations, key=_destructive):
        if operation.definition.raw.get("x-websocket"):
            continue  # a WebSocket upgrade: not plain HTTP
        if tag is not None and tag not in operation.definition.raw.get("tags", []):
            continue
        headers = _headers_for(operation.definition.raw.get("security", []), user_jwt)
        passes: list[tuple[str, GenerationMode, dict[str, str] | None]] = [
            ("positive", GenerationMode.POSITIVE, None),
            ("negative", GenerationMode.NEGATIVE, None),
        ]
        if operation.label in known:
            passes.append(("known", GenerationMode.POSITIVE, known[operation.label]))
        for name, mode, parameters in passes:
            key = f"{operation.label} {name}"
            try:
                counts[key] = _fuzz_one(operation, mode, base_url, headers, parameters)
            except BaseException as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                counts[key] = 1
                # The whole group: hypothesis' "flaky" error carries the first failure inside.
                failures.append(f"{key}: " + "".join(traceback.format_exception(exc))[-6000:])
    return failures, counts


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    runner: ServiceRunner,
) -> None:
    service = await runner.start()
    user = uuid.uuid4()
    token = user_token(user)
    # Something to read: an open instance with a conversation and its messages.
    async with http(service.url) as client:
        name = await open_instance(client, service.simulator_url or "", user, "5511900000077")
        async with http(service.simulator_url or "") as sim:
            await sim_post_ok(
                sim, f"/_sim/instances/{name}/inbound", {"from": "5511977770001", "text": "oi"}
            )
        sent = await client.post(
            "/api/whatsapp/messages",
            headers=auth(token),
            json={"to": "5511977770001", "text": "olá"},
        )
        assert sent.status_code == 202, sent.text
        listed = await client.get("/api/whatsapp/conversations", headers=auth(token))
        conversation = listed.json()["conversations"][0]["id"]
    known = {
        "GET /api/whatsapp/conversations/{conversation_id}/messages": {
            "conversation_id": conversation
        },
        "POST /api/webhook/user/{user_id}": {"user_id": str(user)},
        "POST /admin/instances/{name}/restart": {"name": name},
        "POST /admin/instances/{name}/start": {"name": name},
    }
    started = time.monotonic()
    failures, counts = await trio.to_thread.run_sync(_fuzz, service.url, token, known)
    took = time.monotonic() - started
    cases = sum(counts.values())
    print(f"schemathesis: {cases} cases, {len(counts)} operations x modes, {took:.1f} s")
    assert not failures, "\n\n".join(failures)
    # Every plain-HTTP operation of the live document was exercised.
    async with http(service.url) as client:
        document = (await client.get("/openapi.json")).json()
    expected = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method, spec in methods.items()
        if not spec.get("x-websocket")
    }
    operations = {key.rsplit(" ", 1)[0] for key in counts}
    assert len(expected) >= 21, expected
    assert expected <= operations, expected - operations


async def test_schemathesis_on_the_demo_routes(runner: ServiceRunner) -> None:
    """Demo mode serves three more routes (its own simulator behind the scan button)."""
    service = await runner.start(demo=True)
    async with http(service.url) as client:
        login = await client.post("/api/demo/login")
        assert login.status_code == 200, login.text
        token = login.json()["token"]
        connected = await client.post("/api/whatsapp/connect", headers=auth(token))
        assert connected.status_code == 200, connected.text
    failures, counts = await trio.to_thread.run_sync(_fuzz, service.url, token, {}, "demo")
    assert not failures, "\n\n".join(failures)
    assert {key.rsplit(" ", 1)[0] for key in counts} == {
        "POST /api/demo/login",
        "POST /api/demo/scan",
        "POST /api/demo/inbound",
    }


async def test_admin_actions_on_an_unknown_name_are_404_and_start_nothing(
    runner: ServiceRunner,
) -> None:
    """Found by the run above: they answered 503 and left a dead actor in the tree."""
    service = await runner.start()
    async with http(service.url) as client:
        for action in ("restart", "start", "stop"):
            path = f"/admin/instances/nobody/{action}"
            answer = await client.post(path, headers=auth(ADMIN_TOKEN))
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "not_found"
        tree = (await client.get("/admin/tree", headers=auth(ADMIN_TOKEN))).json()
    assert [a for a in tree["actors"] if a["instance_name"] == "nobody"] == []
