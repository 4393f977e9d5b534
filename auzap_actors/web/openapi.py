"""`GET /openapi.json`: the OpenAPI 3.1 document of the running service.

Built once per app from `operations.OPERATIONS`, keeping the operations whose route the app
serves.  Schemas come from the same msgspec Structs that validate the requests
(`models.py`) and describe the answers (`schemas.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import msgspec
import msgspec.inspect as mi
from quart import Blueprint, Response, current_app
from quart_trio import QuartTrio

from .apidoc import SECURITY_SCHEMES, Answer, Operation
from .models import RequestModel
from .operations import OPERATIONS

docs = Blueprint("docs", __name__)

DOCUMENT = "auzap.openapi"  # app.extensions key of the encoded document
REF = "#/components/schemas/{name}"
_RULE_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def served_routes(app: QuartTrio) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route the app serves; a WebSocket route is its GET.
    HEAD and OPTIONS, which quart adds to every route, are left out."""
    found: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        path = _RULE_PARAM.sub(r"{\1}", rule.rule)
        methods = {"GET"} if rule.websocket else set(rule.methods or ())
        found |= {(m, path) for m in methods - {"HEAD", "OPTIONS"}}
    return found


def build_document(routes: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The document for the operations among `routes`."""
    wanted = set(routes)
    operations = [op for op in OPERATIONS if (op.method, op.path) in wanted]
    models = sorted(
        {m for op in operations for m in _models_of(op) if isinstance(m, type)},
        key=lambda m: m.__name__,
    )
    _, components = msgspec.json.schema_components(models, ref_template=REF)
    for model in models:
        if issubclass(model, RequestModel) and model.at_least_one:
            components[model.__name__]["minProperties"] = 1
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, components)
    # Query models are spelled out as parameters, not referenced.
    for op in operations:
        if op.query is not None:
            components.pop(op.query.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "auzap-actors",
            "version": _version(),
            "description": "One WhatsApp number per user through Evolution API v2. Errors are"
            ' `{"error": {"code", "message"}}` everywhere.',
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in operations)],
    }


def install(app: QuartTrio) -> None:
    """Build the app's document (after every blueprint is registered) and serve it."""
    app.register_blueprint(docs)
    app.extensions[DOCUMENT] = msgspec.json.encode(build_document(served_routes(app)))


@docs.get("/openapi.json")
async def openapi_json() -> Response:
    body: bytes = current_app.extensions[DOCUMENT]
    return Response(body, content_type="application/json")


def _models_of(op: Operation) -> list[Any]:
    found = [a.model for a in op.answers.values() if a.model is not None]
    return found + [m for m in (op.body, op.query) if m is not None]


def _operation(op: Operation, components: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": _operation_id(op),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {str(status): _answer(a) for status, a in sorted(op.answers.items())},
    }
    if op.description:
        spec["description"] = op.description
    if op.websocket:
        spec["x-websocket"] = True
    spec["security"] = [{name: []} if name else {} for name in op.security]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schema}
        for name, schema in op.path_params.items()
    ]
    if op.query is not None:
        parameters += _query_parameters(op.query, components[op.query.__name__])
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        spec["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": {"$ref": REF.format(name=_name(op.body))}}},
        }
    return spec


def _answer(answer: Answer) -> dict[str, Any]:
    spec: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        schema = answer.model
        if isinstance(schema, type):
            schema = {"$ref": REF.format(name=schema.__name__)}
        media = (answer.media,) if isinstance(answer.media, str) else answer.media
        spec["content"] = {kind: {"schema": schema} for kind in media}
    if answer.retry_after:
        spec["headers"] = {
            "Retry-After": {"description": "seconds", "schema": {"type": "string"}},
        }
    return spec


def _query_parameters(model: type[RequestModel], schema: dict[str, Any]) -> list[dict[str, Any]]:
    info = mi.type_info(model)
    assert isinstance(info, mi.StructType)
    found = []
    for field in info.fields:
        prop = dict(schema["properties"][field.encode_name])
        # An optional parameter is an absent one, never a JSON null.
        alternatives = [s for s in prop.pop("anyOf", []) if s.get("type") != "null"]
        if len(alternatives) == 1:
            prop.update(alternatives[0])
        elif alternatives:
            prop["anyOf"] = alternatives
        if prop.get("default", 0) is None:
            del prop["default"]
        description = prop.pop("description", None)
        parameter = {"name": field.encode_name, "in": "query", "required": field.required}
        if description:
            parameter["description"] = description
        found.append({**parameter, "schema": prop})
    return found


def _operation_id(op: Operation) -> str:
    words = re.findall(r"[A-Za-z0-9]+", op.path.replace("/api/whatsapp", "")) or ["root"]
    return "_".join([op.method.lower(), *words])


def _name(model: Any) -> str:
    return str(model.__name__)


def _version() -> str:
    try:
        return metadata.version("auzap-actors")
    except metadata.PackageNotFoundError:
        return "0.0.0"
