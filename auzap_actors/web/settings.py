"""`PATCH /api/whatsapp/settings`: the body model (`models.SettingsChange`, which also
documents it in /openapi.json) turned into plain core data for the instance's actor, with the
checks a schema cannot express (a time zone that exists, quiet hours that are not empty)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from ..core.auto_reply import KEEP, Keep, LimitsPatch, QuietHours
from .errors import ApiError
from .models import QuietHoursBody
from .models import SettingsChange as SettingsBody

T = TypeVar("T")

LIMIT_FIELDS = (
    "auto_reply_per_contact_hour",
    "auto_reply_per_instance_day",
    "auto_reply_quiet_hours",
    "auto_reply_human_pause_min",
    "auto_reply_groups",
)


@dataclass(frozen=True, slots=True)
class SettingsChange:
    auto_reply: bool | None
    prompt: str | None
    limits: LimitsPatch | None  # None: no limit named


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_settings", message)


def _minute(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _quiet_hours(value: QuietHoursBody | None) -> QuietHours | None:
    if value is None:
        return None
    try:
        ZoneInfo(value.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise _bad(
            "`auto_reply_quiet_hours.timezone` is not a known time zone"
            " (use an IANA name such as America/Sao_Paulo)."
        ) from None
    start, end = _minute(value.start), _minute(value.end)
    if start == end:
        raise _bad("`auto_reply_quiet_hours` must not start and end at the same time.")
    return QuietHours(start, end, value.timezone)


def _given(value: T | msgspec.UnsetType) -> T | Keep:
    return KEEP if isinstance(value, msgspec.UnsetType) else value


def settings_change(body: SettingsBody) -> SettingsChange:
    """The change a validated body asks for; ApiError 400 for what the schema cannot check."""
    named = any(getattr(body, name) is not msgspec.UNSET for name in LIMIT_FIELDS)
    quiet = body.auto_reply_quiet_hours
    limits = LimitsPatch(
        per_contact_hour=_given(body.auto_reply_per_contact_hour),
        per_instance_day=_given(body.auto_reply_per_instance_day),
        quiet_hours=KEEP if isinstance(quiet, msgspec.UnsetType) else _quiet_hours(quiet),
        human_pause_min=_given(body.auto_reply_human_pause_min),
        groups=_given(body.auto_reply_groups),
    )
    auto_reply, prompt = body.auto_reply, body.auto_reply_prompt
    return SettingsChange(
        None if isinstance(auto_reply, msgspec.UnsetType) else auto_reply,
        None if isinstance(prompt, msgspec.UnsetType) else prompt,
        limits if named else None,
    )
