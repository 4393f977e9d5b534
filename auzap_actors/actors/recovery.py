"""What the supervisor does when an actor's run ends in an error: a database outage is waited
out (no crash counted, the mailbox kept), a crash is restarted under the restart budget, and
an actor that spent its budget is parked, then revived after a cool-down that grows with each
parking.  The decisions are `core.supervision`'s; this carries them out on the actor's record.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable

import trio

from ..core.errors import root_cause
from ..core.supervision import RestartPolicy, decide_restart, outage_delay, park_delay
from ..observability.metrics import Metrics
from ..store.faults import is_transient
from .child import Child
from .mailbox import ActorUnavailable

log = logging.getLogger(__name__)


async def wait_for_database(
    child: Child, cause: BaseException, outages: int, policy: RestartPolicy
) -> None:
    """A database outage stopped `child`'s actor: it shows `waiting_for_database` and waits
    (longer with each failed start in a row) before the supervisor starts it again."""
    child.status = "waiting_for_database"
    child.last_error = f"waiting for the database: {type(cause).__name__}: {cause}"
    child.ready.set()  # callers get DatabaseUnavailable (503) instead of waiting
    delay = outage_delay(outages, policy, random.random())
    log.warning(
        "actor %s waits %.1f s for the database (%s: %s)",
        child.name,
        delay,
        type(cause).__name__,
        cause,
    )
    await trio.sleep(delay)


async def after_crash(
    child: Child, exc: BaseException, cause: BaseException, policy: RestartPolicy, metrics: Metrics
) -> bool:
    """Count a crash; False when the actor must end (never: a parked one is revived)."""
    error_id = uuid.uuid4().hex[:12]
    child.last_error = f"[{error_id}] {type(cause).__name__}: {cause}"
    log.error("actor %s crashed (error %s)", child.name, error_id, exc_info=exc)
    decision = decide_restart(child.crash_history, trio.current_time(), policy)
    child.crash_history = decision.history
    if decision.restart:
        child.restarts += 1
        metrics.actor_restarted("crash")
        child.status = "restarting"
        await trio.sleep(decision.delay_s)
        return True
    child.parkings += 1
    metrics.actor_parked()
    cool_down = park_delay(child.parkings, policy)
    child.status = "crashed"
    child.revive_at = time.time() + cool_down
    child.ready.set()
    child.mailbox.drain_with(ActorUnavailable(f"the actor of {child.name} is crashed"))
    log.error("actor %s parked: restart budget spent; revived in %.0f s", child.name, cool_down)
    await trio.sleep(cool_down)
    child.crash_history, child.revive_at = (), None
    child.restarts += 1
    metrics.actor_restarted("revival")
    log.warning("reviving parked actor %s (parking %d)", child.name, child.parkings)
    return True


async def retry_while_database_is_away(
    what: str, work: Callable[[], Awaitable[None]], policy: RestartPolicy
) -> None:
    """Run `work`; while the database is away, wait and run it again."""
    failures = 0
    while True:
        try:
            await work()
            return
        except Exception as exc:
            if not is_transient(root_cause(exc)):
                raise
            failures += 1
            delay = outage_delay(failures, policy, random.random())
            log.warning("%s waits %.1f s for the database: %r", what, delay, exc)
            await trio.sleep(delay)
