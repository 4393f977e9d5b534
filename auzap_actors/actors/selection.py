"""Which of a user's instances a call means (AUZAP_MAX_INSTANCES_PER_USER): their primary
`user_<uuid>` without a selector, else the one of theirs named or labelled so.  Every lookup is
scoped by the caller's user id in SQL, so a selector can never reach another user's instance.

Also the facade's errors about instances and its guard that turns a database away right now
into a 503 (they live here so that both the facade and this module can use them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..core.naming import instance_name_for, is_label
from ..core.views import InstanceSnapshot
from ..store import instances, multi
from ..store.faults import is_transient
from .mailbox import ActorError, DatabaseUnavailable
from .supervisor import Supervisor


class UnknownActor(ActorError):
    """No actor by that name on this node: 404."""


class UnknownInstance(UnknownActor):
    """The instance selector names none of the user's instances: 404."""


class InstanceLimitReached(ActorError):
    """The user owns AUZAP_MAX_INSTANCES_PER_USER instances already: 409 `instance_limit`."""


@asynccontextmanager
async def database() -> AsyncIterator[None]:
    """A database that is away right now is a 503 (retry), never a 500."""
    try:
        yield
    except Exception as exc:
        if is_transient(exc):
            raise DatabaseUnavailable("The database is not reachable now; retry shortly.") from exc
        raise


def _unknown(instance: str) -> UnknownInstance:
    return UnknownInstance(f"You have no WhatsApp instance named {instance!r}.")


class Selection:
    def __init__(self, pool: Any, supervisor: Supervisor, max_per_user: int) -> None:
        self._pool = pool
        self._supervisor = supervisor
        self.max_per_user = max_per_user

    async def record(
        self, user_id: uuid.UUID, instance: str | None
    ) -> instances.InstanceRecord | None:
        """The user's primary (None) or selected instance's row; only ever the user's own."""
        async with database():
            if instance is None:
                return await instances.find_by_user(self._pool, user_id)
            return await instances.find_for_user(self._pool, user_id, instance)

    async def required(self, user_id: uuid.UUID, instance: str | None) -> str:
        """The name of the user's primary or selected instance; UnknownActor when the user has
        none, UnknownInstance when the selector names none of theirs."""
        record = await self.record(user_id, instance)
        if record is None:
            if instance is not None:
                raise _unknown(instance)
            raise UnknownActor("You have no WhatsApp instance.")
        return record.instance_name

    async def for_reads(self, user_id: uuid.UUID, instance: str | None) -> str:
        """The name whose stored conversations a read lists (a user without an instance reads
        the empty lists of their `user_<uuid>`, as ever)."""
        if instance is None and self.max_per_user == 1:
            return instance_name_for(user_id)
        record = await self.record(user_id, instance)
        if record is None:
            if instance is not None:
                raise _unknown(instance)
            return instance_name_for(user_id)
        return record.instance_name

    async def listing(self, user_id: uuid.UUID) -> list[tuple[InstanceSnapshot, str | None]]:
        """All the user's instances, the primary first, each (as its actor sees it) with its
        label."""
        async with database():
            records = await instances.list_for_user(self._pool, user_id)
        found = []
        for record in records:
            child = self._supervisor.get(record.instance_name)
            snapshot = record.snapshot()
            if child is not None and child.snapshot is not None and not child.deleted:
                snapshot = child.snapshot
            found.append((snapshot, record.instance_label))
        return found

    async def ensure(
        self,
        user_id: uuid.UUID,
        organization_id: uuid.UUID | None,
        instance: str | None,
        label: str | None,
    ) -> str:
        """The instance a connect means, created when it is a new label (up to the limit:
        InstanceLimitReached beyond it), its actor running; returns its name."""
        if instance is not None:
            record = await self.record(user_id, instance)
            if record is not None:
                await self._supervisor.ensure_actor(record.instance_name)
                return record.instance_name
            if not is_label(instance) or self.max_per_user == 1:
                # Names are the service's to give: an unknown one is not created on demand.
                # With one instance per user a selector only ever selects.
                raise _unknown(instance)
            label = label or instance
        try:
            async with database():
                record, _created = await multi.create_instance(
                    self._pool, user_id, organization_id, label, self.max_per_user
                )
        except multi.InstanceLimit as exc:
            raise InstanceLimitReached(str(exc)) from None
        await self._supervisor.ensure_actor(record.instance_name)
        return record.instance_name
