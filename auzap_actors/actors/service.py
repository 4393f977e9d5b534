"""The seed's instance operations, race-free: findUserInstance, ensureUserInstance and
connectUserWhatsApp.  The seed's createUserInstance (the Evolution side) is the actor's
first step of every connect (`InstanceActor.ensure_created`), so it runs exactly once per
instance however many connects race.

Races are closed in two places: the database (unique user_id and instance_name, ON CONFLICT)
makes a second row impossible, and the instance's actor serialises everything done with
Evolution, so twenty concurrent connects produce one `/instance/create`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..core.naming import instance_name_for
from ..core.views import InstanceSnapshot
from ..store import instances
from .messages import Connect, DeleteInstance, Logout, NotConnected, SendText
from .supervisor import Supervisor


@dataclass(frozen=True, slots=True)
class UserRef:
    user_id: uuid.UUID
    organization_id: uuid.UUID | None
    expires_at: float | None = None  # epoch seconds of the token that named this user


class InstanceService:
    def __init__(self, pool: Any, supervisor: Supervisor, call_timeout_s: float = 30.0) -> None:
        self.pool = pool
        self.supervisor = supervisor
        self.call_timeout_s = call_timeout_s

    async def find_user_instance(self, user: UserRef) -> InstanceSnapshot | None:
        """The user's instance as its actor sees it, or None if the user has none."""
        name = instance_name_for(user.user_id)
        handle = self.supervisor.get(name)
        if handle is not None and handle.snapshot is not None and not handle.deleted:
            return handle.snapshot
        record = await instances.find_by_user(self.pool, user.user_id)
        return record.snapshot() if record else None

    async def ensure_user_instance(self, user: UserRef) -> str:
        """The user's row exists and its actor runs; returns the instance name."""
        name = instance_name_for(user.user_id)
        record, _created = await instances.ensure_instance(
            self.pool, name, user.user_id, user.organization_id
        )
        await self.supervisor.ensure_actor(record.instance_name)
        return record.instance_name

    async def connect_user_whatsapp(self, user: UserRef) -> InstanceSnapshot:
        name = await self.ensure_user_instance(user)
        snapshot: InstanceSnapshot = await self.supervisor.call(
            name, Connect(), self.call_timeout_s
        )
        return snapshot

    async def logout(self, user: UserRef) -> InstanceSnapshot | None:
        record = await instances.find_by_user(self.pool, user.user_id)
        if record is None:
            return None
        snapshot: InstanceSnapshot = await self.supervisor.call(
            record.instance_name, Logout(), self.call_timeout_s
        )
        return snapshot

    async def delete(self, user: UserRef, *, purge: bool = False) -> bool:
        record = await instances.find_by_user(self.pool, user.user_id)
        if record is None:
            return False
        # The actor deletes the instance in Evolution and here, answers, then ends itself.
        await self.supervisor.call(record.instance_name, DeleteInstance(purge), self.call_timeout_s)
        return True

    async def send_text(self, user: UserRef, to: str, text: str) -> dict[str, Any]:
        """Send through the user's instance; NotConnected if it is not open."""
        record = await instances.find_by_user(self.pool, user.user_id)
        if record is None:
            raise NotConnected("You have no WhatsApp instance yet; connect first.")
        view: dict[str, Any] = await self.supervisor.call(
            record.instance_name, SendText(to, text), self.call_timeout_s
        )
        return view
