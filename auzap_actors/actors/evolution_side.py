"""The Evolution calls an instance actor makes, each turned into the input the core step
expects back (`core.instance`).  Expected refusals become inputs; only the caller-facing
ones (a user's connect) raise.
"""

from __future__ import annotations

import logging

from ..core.instance import (
    CallReconnect,
    ConnectAnswered,
    Created,
    Observed,
    ReconnectOutcome,
    ResumeAnswered,
    ResumeSession,
    RunCheck,
)
from ..evolution.errors import (
    EvolutionError,
    EvolutionForbidden,
    EvolutionNotFound,
    EvolutionUnavailable,
)
from ..evolution.types import ConnectResult
from ..store import instances
from .deps import ActorDeps

log = logging.getLogger(__name__)


async def create_or_adopt(deps: ActorDeps, name: str) -> Created:
    """Create the instance in Evolution (the seed's createUserInstance) and record it; the
    answer says whether it was there already (adopted)."""
    evolution = deps.evolution
    config = deps.webhook_config(name)
    try:
        created = await evolution.create_instance(name, webhook=config)
        instance_id: str | None = created.instance_id
        token: str | None = created.token
        adopted = False
    except EvolutionForbidden:
        # The name exists already (an earlier create whose answer we lost): adopt it and
        # make sure it calls us back with the current secret.
        await evolution.set_webhook(name, config)
        found = await evolution.fetch_instances(name=name)
        instance_id, token = (found[0].id if found else None), None
        adopted = True
    await instances.mark_created_in_evolution(deps.pool, name, instance_id, token)
    return Created(adopted=adopted)


async def sync_webhook(deps: ActorDeps, name: str) -> bool:
    """Make Evolution call back this service's current URL with the instance's current secret
    (both may have changed since the instance was created; instances configured before
    per-instance secrets carried the master, and are moved to their own here, at boot).  False
    when Evolution has no such instance.
    """
    wanted = deps.webhook_config(name)
    try:
        async with deps.boot_gate:  # only the boot syncs the webhook
            current = await deps.evolution.find_webhook(name)
            if current is None or (current.url, current.headers, current.enabled) != (
                wanted.url,
                wanted.headers,
                True,
            ):
                await deps.evolution.set_webhook(name, wanted)
    except EvolutionNotFound:
        return False
    except EvolutionError as exc:
        log.warning("could not check the webhook of %s: %s", name, exc)
    return True


async def observe(deps: ActorDeps, name: str, check: RunCheck) -> Observed:
    """One look at Evolution: connectionState, or fetchInstances (which knows a logout's
    reason code) for a full check; or the node's census, when the step allows it and the
    census says open.  A boot's check (boot, reconcile) waits its turn at the node's boot
    gate; a periodic one does not."""
    if check.shared and deps.census is not None:
        # Only an `open` is taken from the census; anything else is looked at alone.
        if await deps.census.status(name) == "open":
            return Observed(check.purpose, "open", census=True)
    if check.purpose == "periodic":
        return await _observe(deps, name, check)
    async with deps.boot_gate:
        return await _observe(deps, name, check)


async def _observe(deps: ActorDeps, name: str, check: RunCheck) -> Observed:
    evolution = deps.evolution
    try:
        if check.full:
            found = await evolution.fetch_instances(name=name)
            if not found:
                return Observed(check.purpose, missing=True)
            info = found[0]
            return Observed(check.purpose, info.connection_status, info.disconnection_reason_code)
        return Observed(check.purpose, await evolution.connection_state(name))
    except EvolutionNotFound:
        return Observed(check.purpose, missing=True)
    except EvolutionUnavailable as exc:
        log.info("checking %s: Evolution unavailable: %s", name, exc)
        return Observed(check.purpose, unreachable=str(exc))
    except EvolutionError as exc:
        log.info("checking %s: Evolution refused: %s", name, exc)
        return Observed(check.purpose, unreachable=f"Evolution answered an error: {exc}")


def _answered(result: ConnectResult) -> ConnectAnswered:
    qr = result.qr.base64 if result.qr is not None else None
    return ConnectAnswered(result.state, qr or None)


async def connect(deps: ActorDeps, name: str) -> ConnectAnswered:
    """A user's connect (bounded node-wide); Evolution's errors reach the caller."""
    async with deps.connect_limiter:
        return _answered(await deps.evolution.connect(name))


async def resume(deps: ActorDeps, name: str, effect: ResumeSession) -> ResumeAnswered:
    """Connect once, at boot, a session that dropped while we were down."""
    try:
        answer = await connect(deps, name)
    except EvolutionError as exc:
        log.info("resuming %s at start failed: %s", name, exc)
        return ResumeAnswered(False, effect.pending)
    return ResumeAnswered(answer.state == "open", effect.pending)


async def reconnect(deps: ActorDeps, name: str, effect: CallReconnect) -> ReconnectOutcome:
    """An automatic reconnect: restart a session stuck connecting, else connect."""
    evolution = deps.evolution
    created = False
    try:
        if effect.create_first:
            await create_or_adopt(deps, name)
            created = True
        async with deps.connect_limiter:
            if effect.restart:
                result = await evolution.restart(name)
            else:
                result = await evolution.connect(name)
    except EvolutionUnavailable as exc:
        return ReconnectOutcome("unreachable", detail=str(exc), created=created)
    except EvolutionError as exc:
        log.info("reconnect of %s refused: %s", name, exc)
        return ReconnectOutcome("refused", detail=str(exc), created=created)
    answer = _answered(result)
    if answer.state == "open":
        return ReconnectOutcome("open", created=created)
    if answer.qr:
        return ReconnectOutcome("qr", qr=answer.qr, created=created)
    return ReconnectOutcome("pending", created=created)


async def logout(deps: ActorDeps, name: str) -> None:
    try:
        await deps.evolution.logout(name)
    except EvolutionError as exc:
        # Already closed on Evolution's side (2.3.6 answers 400): nothing to undo.
        log.info("logout of %s: %s", name, exc)


async def delete(deps: ActorDeps, name: str) -> None:
    try:
        await deps.evolution.delete_instance(name)
    except EvolutionNotFound:
        pass
