"""The request models of `models.py` at work: a JSON body or a query string parsed into its
model, or the API's 400 `{"error": {"code", "message"}}` naming the field.

The code comes from the model (`error_code`, or `field_codes` per field); the message is built
from msgspec's reason and the field's description, so it says what the field must be.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

from ..core.webhook import WebhookError, decode_json
from .errors import ApiError
from .models import RequestModel

Model = TypeVar("Model", bound=RequestModel)


def parse_body(model: type[Model], raw: bytes) -> Model:
    """The JSON body as `model`, or the API's 400 naming the field."""
    # The webhooks' strict decoder first: NaN, huge numbers and deep nesting are a 400 here too.
    try:
        body = decode_json(raw)
    except WebhookError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    if _has_lone_surrogate(body):
        # JSON may escape half of a UTF-16 pair (`"\\ud800"`); no database or HTTP client
        # can carry that string on.
        raise ApiError(
            400, "invalid_json", "The body contains an unpaired UTF-16 surrogate (\\ud800-\\udfff)."
        )
    info = _info(model)
    if info.forbid_unknown_fields:
        unknown = sorted(set(body) - {f.encode_name for f in info.fields})
        if unknown:
            names = ", ".join(f"`{name}`" for name in unknown)
            raise ApiError(400, model.error_code, f"Unknown fields: {names}.")
    try:
        return msgspec.convert(body, model, strict=True)
    except msgspec.ValidationError as exc:
        raise _refusal(model, str(exc)) from None


def parse_query(model: type[Model], args: Mapping[str, str]) -> Model:
    """The query string as `model`.  Integers are ASCII digits, booleans `true`/`false` (any
    case), an empty value is an absent one; parameters the model does not name are ignored."""
    values: dict[str, Any] = {}
    for field in _info(model).fields:
        raw = args.get(field.encode_name)
        if raw is None or raw == "":
            continue
        kind = _bare(field.type)
        if isinstance(kind, mi.IntType):
            values[field.encode_name] = int(raw) if raw.isascii() and raw.isdigit() else raw
        elif isinstance(kind, mi.BoolType):
            lowered = raw.lower()
            values[field.encode_name] = lowered == "true" if lowered in ("true", "false") else raw
        else:
            values[field.encode_name] = raw
    try:
        return msgspec.convert(values, model, strict=True)
    except msgspec.ValidationError as exc:
        raise _refusal(model, str(exc)) from None


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a decoded JSON value holds a string that is not valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# ---- refusals ----------------------------------------------------------------------------

_REASON = re.compile(r"^(?P<what>.*?)(?: - at `\$\.(?P<field>[^`\[.]+)[^`]*`)?$", re.S)
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<field>[^`]+)`$")
_TYPE = re.compile(r"^Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`$")
_LONGEST = re.compile(r"^Expected `str` of length <= (?P<n>\d+)$")
_SHORTEST = re.compile(r"^Expected `str` of length >= (?P<n>\d+)$")
_WORDS = {
    "bool": "true or false",
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "object": "a JSON object",
    "array": "a JSON array",
}


def _refusal(model: type[RequestModel], reason: str) -> ApiError:
    match = _REASON.match(reason)
    what = match["what"] if match else reason
    field = match["field"] if match else None
    named = _NAMED.match(what)
    if field is None and named:
        field = named["field"]
    if field is None:  # about the whole body (at_least_one)
        return ApiError(400, model.error_code, what)
    code = model.field_codes.get(field, model.error_code)
    return ApiError(400, code, _sentence(model, field, what))


def _sentence(model: type[RequestModel], field: str, what: str) -> str:
    info = next((f for f in _info(model).fields if f.encode_name == field), None)
    description = _description(info.type) if info else None
    kind = _bare(info.type) if info else None
    if what.startswith("Object missing required field"):
        return f"`{field}` is required" + (f": {description}." if description else ".")
    if what.startswith("Object contains unknown field"):
        return f"Unknown field: `{field}`."
    if isinstance(kind, mi.IntType) and kind.ge is not None and kind.le is not None:
        return f"`{field}` must be a whole number from {kind.ge} to {kind.le}."
    if found := _TYPE.match(what):
        want = " or ".join(_WORDS.get(t, t) for t in found["want"].split(" | "))
        return f"`{field}` must be {want}, not {found['got']}."
    if found := _LONGEST.match(what):
        return f"`{field}` is longer than {found['n']} characters."
    if (found := _SHORTEST.match(what)) and found["n"] == "1":
        return f"`{field}` must not be empty."
    if description:
        return f"`{field}` must be {description}."
    return f"`{field}`: {what}."


def _info(model: type[RequestModel]) -> mi.StructType:
    info = mi.type_info(model)
    assert isinstance(info, mi.StructType)
    return info


def _bare(kind: mi.Type) -> mi.Type:
    """The type under its metadata and its `| None`."""
    if isinstance(kind, mi.Metadata):
        return _bare(kind.type)
    if isinstance(kind, mi.UnionType):
        rest = [t for t in kind.types if not isinstance(t, mi.NoneType)]
        if len(rest) == 1:
            return _bare(rest[0])
    return kind


def _description(kind: mi.Type) -> str | None:
    if isinstance(kind, mi.Metadata):
        found = (kind.extra_json_schema or {}).get("description")
        return found if isinstance(found, str) else _description(kind.type)
    if isinstance(kind, mi.UnionType):
        for member in kind.types:
            if (found := _description(member)) is not None:
                return found
    return None
