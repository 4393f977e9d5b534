"""The `whatsapp_instances` aggregate.  Every statement is parameterised and scoped by
instance name or user id."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from ..core.auto_reply import AutoReplyLimits, QuietHours
from ..core.health import HealthState
from ..core.naming import instance_name_for
from ..core.state import InstanceState, Status
from ..core.views import InstanceSnapshot
from . import inbox

_HEALTH_FIELDS = {f.name for f in fields(HealthState)}


# The health of an instance never checked, by whether it is open: frozen, so every actor
# that starts from such a row shares one (a node may hold 100k idle accounts).
_NEVER_CHECKED = {
    True: HealthState(status="healthy", expect_open=True),
    False: HealthState(status="disconnected", expect_open=False),
}
_DEFAULT_LIMITS = AutoReplyLimits()


def health_from_json(data: dict[str, Any], status: Status) -> HealthState:
    """The stored health; an instance never checked is watched only if it is open."""
    if not data:
        return _NEVER_CHECKED[status is Status.OPEN]
    known = {k: v for k, v in data.items() if k in _HEALTH_FIELDS}
    known["issues"] = tuple(known.get("issues") or ())
    try:
        return HealthState(**known)
    except TypeError:
        return HealthState(expect_open=status is Status.OPEN)


def health_to_json(health: HealthState) -> dict[str, Any]:
    data = asdict(health)
    data["issues"] = list(health.issues)
    return data


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    id: str
    instance_name: str
    user_id: str | None
    organization_id: str | None
    status: str
    phone_number: str | None
    qr_code: str | None
    profile_name: str | None
    state_since: float | None
    last_reason: int | None
    health: dict[str, Any]
    auto_reply: bool
    auto_reply_prompt: str | None
    evolution_instance_id: str | None
    updated_at: float
    evolution_token: str | None = field(default=None, repr=False)
    auto_reply_per_contact_hour: int = 5
    auto_reply_per_instance_day: int = 200
    auto_reply_quiet_start: int | None = None
    auto_reply_quiet_end: int | None = None
    auto_reply_timezone: str | None = None
    auto_reply_human_pause_min: int | None = None
    auto_reply_groups: bool = False
    sessionless: bool = False
    instance_label: str | None = None  # NULL for the primary `user_<uuid>` (migration 0011)

    def auto_reply_limits(self) -> AutoReplyLimits:
        quiet = None
        if (
            self.auto_reply_quiet_start is not None
            and self.auto_reply_quiet_end is not None
            and self.auto_reply_timezone
        ):
            quiet = QuietHours(
                self.auto_reply_quiet_start, self.auto_reply_quiet_end, self.auto_reply_timezone
            )
        limits = AutoReplyLimits(
            per_contact_hour=self.auto_reply_per_contact_hour,
            per_instance_day=self.auto_reply_per_instance_day,
            quiet_hours=quiet,
            human_pause_min=self.auto_reply_human_pause_min,
            groups=self.auto_reply_groups,
        )
        # Frozen: the usual (default) limits are one shared object, not one per actor.
        return _DEFAULT_LIMITS if limits == _DEFAULT_LIMITS else limits

    def snapshot(self) -> InstanceSnapshot:
        """The snapshot an actor starts from (what survives a restart is what was written)."""
        try:
            status = Status(self.status)
        except ValueError:
            status = Status.DISCONNECTED
        state = InstanceState(
            status=status,
            phone_number=self.phone_number,
            profile_name=self.profile_name,
            qr_code=self.qr_code if status is Status.WAITING_QR else None,
            last_reason=self.last_reason,
            since=self.state_since,
            sessionless=self.sessionless,
        )
        health = health_from_json(self.health, status)
        return InstanceSnapshot(
            instance_name=self.instance_name,
            user_id=self.user_id,
            organization_id=self.organization_id,
            state=state,
            health=health,
            auto_reply=self.auto_reply,
            auto_reply_prompt=self.auto_reply_prompt,
            auto_reply_limits=self.auto_reply_limits(),
            updated_at=self.updated_at,
            in_evolution=self.evolution_instance_id is not None,
        )


_COLUMNS = (
    "id::text, instance_name, user_id::text, organization_id::text, coalesce(status,"
    " 'disconnected') AS status, phone_number, qr_code, profile_name,"
    " extract(epoch FROM state_since)::float8 AS state_since, last_reason, health,"
    " auto_reply, auto_reply_prompt, evolution_instance_id, evolution_token,"
    " extract(epoch FROM coalesce(updated_at, now()))::float8 AS updated_at,"
    " auto_reply_per_contact_hour, auto_reply_per_instance_day, auto_reply_quiet_start,"
    " auto_reply_quiet_end, auto_reply_timezone, auto_reply_human_pause_min, auto_reply_groups,"
    " sessionless, instance_label"
)


def _record(row: Any) -> InstanceRecord:
    return InstanceRecord(**dict(row.items()))


def _ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


# A user's instances in order: `user_<uuid>` first (their primary), then by creation.  With
# one instance per user (the seed's unique index) there is only ever the one row.
_USER_ORDER = "ORDER BY instance_name = $2 DESC, created_at, instance_name"


async def find_by_user(db: Any, user_id: uuid.UUID) -> InstanceRecord | None:
    """The user's primary instance (their only one, unless AUZAP_MAX_INSTANCES_PER_USER > 1)."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM whatsapp_instances WHERE user_id = $1 {_USER_ORDER} LIMIT 1",
        user_id,
        instance_name_for(user_id),
    )
    return _record(row) if row else None


async def find_for_user(db: Any, user_id: uuid.UUID, selector: str) -> InstanceRecord | None:
    """The user's instance named `selector` or labelled so; never another user's."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM whatsapp_instances"
        " WHERE user_id = $1 AND (instance_name = $2 OR instance_label = $2)"
        " ORDER BY instance_name = $2 DESC LIMIT 1",
        user_id,
        selector,
    )
    return _record(row) if row else None


async def list_for_user(db: Any, user_id: uuid.UUID) -> list[InstanceRecord]:
    """All the user's instances, the primary first."""
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM whatsapp_instances WHERE user_id = $1 {_USER_ORDER}",
        user_id,
        instance_name_for(user_id),
    )
    return [_record(r) for r in rows]


async def find_by_name(db: Any, name: str) -> InstanceRecord | None:
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM whatsapp_instances WHERE instance_name = $1", name
    )
    return _record(row) if row else None


async def list_page(db: Any, after_name: str | None, limit: int) -> list[InstanceRecord]:
    """Up to `limit` rows in name order after `after_name` (None: from the first): the boot
    loads every instance a page at a time (keyset on the indexed name, so each page is one
    index range, however many pages came before)."""
    if after_name is None:
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM whatsapp_instances ORDER BY instance_name LIMIT $1", limit
        )
    else:
        rows = await db.fetch(
            f"SELECT {_COLUMNS} FROM whatsapp_instances WHERE instance_name > $1"
            " ORDER BY instance_name LIMIT $2",
            after_name,
            limit,
        )
    return [_record(r) for r in rows]


async def list_instances(db: Any) -> list[InstanceRecord]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM whatsapp_instances ORDER BY created_at")
    return [_record(r) for r in rows]


async def ensure_auth_user(db: Any, user_id: uuid.UUID) -> None:
    """The user's `auth.users` row, added if missing (a no-op where the user exists)."""
    await db.execute(
        "INSERT INTO auth.users (id) SELECT $1"
        " WHERE NOT EXISTS (SELECT 1 FROM auth.users WHERE id = $1)"
        " ON CONFLICT DO NOTHING",
        user_id,
    )


async def ensure_instance(
    pool: Any, name: str, user_id: uuid.UUID, organization_id: uuid.UUID | None
) -> tuple[InstanceRecord, bool]:
    """The user's row, created if missing; concurrent callers get the same row.

    The unique indexes on instance_name and user_id make a second row impossible even across
    nodes; ON CONFLICT turns the race into a read.
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            # Supabase has the user already; a standalone database learns it from the JWT.
            await ensure_auth_user(conn, user_id)
            # A new row has no session yet: a logout Evolution reports before it is seen open
            # is a deleted predecessor's (core.state.InstanceState.sessionless).
            row = await conn.fetchrow(
                "INSERT INTO whatsapp_instances (instance_name, user_id, organization_id,"
                " sessionless) VALUES ($1, $2, $3, true) ON CONFLICT DO NOTHING"
                " RETURNING instance_name",
                name,
                user_id,
                organization_id,
            )
            if row is not None:
                # Events already waiting under a new row's name were sent for an earlier
                # instance of that name (deleted, its logout still arriving): never applied.
                await inbox.retire(conn, name)
        record = await find_by_user(conn, user_id)
    if record is None:
        raise RuntimeError(f"instance {name} vanished right after it was ensured")
    return record, row is not None


async def save_snapshot(db: Any, snapshot: InstanceSnapshot) -> None:
    """Write the state an actor must come back to after a restart."""
    state = snapshot.state
    health = snapshot.health
    limits = snapshot.auto_reply_limits
    quiet = limits.quiet_hours
    await db.execute(
        "UPDATE whatsapp_instances SET status = $2, is_connected = $3, phone_number = $4,"
        " qr_code = $5, profile_name = $6, state_since = $7, last_reason = $8, health = $9,"
        " updated_at = $10, organization_id = $11::uuid, auto_reply = $12,"
        " auto_reply_prompt = $13, auto_reply_per_contact_hour = $14,"
        " auto_reply_per_instance_day = $15, auto_reply_quiet_start = $16,"
        " auto_reply_quiet_end = $17, auto_reply_timezone = $18,"
        " auto_reply_human_pause_min = $19, auto_reply_groups = $20, sessionless = $21"
        " WHERE instance_name = $1",
        snapshot.instance_name,
        state.status.value,
        state.is_connected,
        state.phone_number,
        state.qr_code,
        state.profile_name,
        _ts(state.since),
        state.last_reason,
        health_to_json(health),
        _ts(snapshot.updated_at),
        snapshot.organization_id,
        snapshot.auto_reply,
        snapshot.auto_reply_prompt,
        limits.per_contact_hour,
        limits.per_instance_day,
        None if quiet is None else quiet.start,
        None if quiet is None else quiet.end,
        None if quiet is None else quiet.timezone,
        limits.human_pause_min,
        limits.groups,
        state.sessionless,
    )


async def mark_created_in_evolution(
    db: Any, name: str, evolution_instance_id: str | None, token: str | None
) -> None:
    await db.execute(
        "UPDATE whatsapp_instances SET evolution_instance_id = coalesce($2, evolution_instance_id,"
        " 'unknown'), evolution_token = coalesce($3, evolution_token), updated_at = now()"
        " WHERE instance_name = $1",
        name,
        evolution_instance_id,
        token,
    )


async def delete_instance(db: Any, name: str) -> None:
    await db.execute("DELETE FROM whatsapp_instances WHERE instance_name = $1", name)
