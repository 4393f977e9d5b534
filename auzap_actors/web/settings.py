"""The body of `PATCH /api/whatsapp/settings`, validated in one place: every key, its type and
its range, with the sentence a 400 carries.  What it returns is plain core data for the
instance's actor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..core.auto_reply import KEEP, LimitsPatch, QuietHours
from .errors import ApiError

MAX_PROMPT = 4000
PER_CONTACT_HOUR = (1, 100)
PER_INSTANCE_DAY = (1, 100_000)
HUMAN_PAUSE_MIN = (1, 7 * 24 * 60)
SETTINGS = (
    "auto_reply",
    "auto_reply_prompt",
    "auto_reply_per_contact_hour",
    "auto_reply_per_instance_day",
    "auto_reply_quiet_hours",
    "auto_reply_human_pause_min",
    "auto_reply_groups",
)
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class SettingsChange:
    auto_reply: bool | None
    prompt: str | None
    limits: LimitsPatch | None  # None: no limit named


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_settings", message)


def _int(body: dict[str, Any], key: str, bounds: tuple[int, int]) -> int:
    value = body[key]
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(f"`{key}` must be a whole number from {low} to {high}.")
    return value


def _minute(value: Any, key: str) -> int:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(f"`auto_reply_quiet_hours.{key}` must be a time as HH:MM (00:00 to 23:59).")
    return int(match.group(1)) * 60 + int(match.group(2))


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise _bad("`auto_reply_quiet_hours.timezone` must be an IANA time zone name.")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(
            "`auto_reply_quiet_hours.timezone` is not a known time zone"
            " (use an IANA name such as America/Sao_Paulo)."
        ) from None
    return value


def _quiet_hours(value: Any) -> QuietHours | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("`auto_reply_quiet_hours` must be null or {start, end, timezone}.")
    unknown = sorted(set(value) - {"start", "end", "timezone"})
    missing = sorted({"start", "end", "timezone"} - set(value))
    if unknown or missing:
        raise _bad("`auto_reply_quiet_hours` must have exactly `start`, `end` and `timezone`.")
    start, end = _minute(value["start"], "start"), _minute(value["end"], "end")
    if start == end:
        raise _bad("`auto_reply_quiet_hours` must not start and end at the same time.")
    return QuietHours(start, end, _timezone(value["timezone"]))


def parse_settings(body: dict[str, Any]) -> SettingsChange:
    """The change a body asks for; ApiError 400 naming the first problem."""
    unknown = sorted(set(body) - set(SETTINGS))
    if unknown:
        raise _bad(f"Unknown settings: {', '.join(unknown)}.")
    if not body:
        raise _bad(f"Give at least one of: {', '.join(SETTINGS)}.")
    auto_reply = body.get("auto_reply")
    if "auto_reply" in body and not isinstance(auto_reply, bool):
        raise _bad("`auto_reply` must be true or false.")
    prompt = body.get("auto_reply_prompt")
    if "auto_reply_prompt" in body:
        if not isinstance(prompt, str):
            raise _bad("`auto_reply_prompt` must be a string.")
        if len(prompt) > MAX_PROMPT:
            raise _bad(f"`auto_reply_prompt` is longer than {MAX_PROMPT} characters.")
        if "\x00" in prompt:
            raise _bad("`auto_reply_prompt` contains a NUL character.")
    groups = body.get("auto_reply_groups", KEEP)
    if "auto_reply_groups" in body and not isinstance(groups, bool):
        raise _bad("`auto_reply_groups` must be true or false.")
    pause = body.get("auto_reply_human_pause_min", KEEP)
    if pause is not None and "auto_reply_human_pause_min" in body:
        pause = _int(body, "auto_reply_human_pause_min", HUMAN_PAUSE_MIN)
    limits = LimitsPatch(
        per_contact_hour=_int(body, "auto_reply_per_contact_hour", PER_CONTACT_HOUR)
        if "auto_reply_per_contact_hour" in body
        else KEEP,
        per_instance_day=_int(body, "auto_reply_per_instance_day", PER_INSTANCE_DAY)
        if "auto_reply_per_instance_day" in body
        else KEEP,
        quiet_hours=_quiet_hours(body["auto_reply_quiet_hours"])
        if "auto_reply_quiet_hours" in body
        else KEEP,
        human_pause_min=pause,
        groups=groups,
    )
    named = any(key in body for key in SETTINGS[2:])
    return SettingsChange(auto_reply, prompt, limits if named else None)
