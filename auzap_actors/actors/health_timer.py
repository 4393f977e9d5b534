"""The health timer of an instance actor: it only produces inputs.  Whether a tick leads to
a check is the core step's decision (`core.instance`, `Tick`)."""

from __future__ import annotations

import random

import trio

from ..core.health import HealthPolicy, next_check_delay
from .mailbox import Mailbox, MailboxFull
from .messages import HealthTick


async def health_timer(mailbox: Mailbox, policy: HealthPolicy) -> None:
    """Cast a HealthTick into the actor's mailbox every interval, jittered and spread so that
    actors started together do not check together."""
    await trio.sleep(policy.interval_s * random.random())
    while True:
        try:
            mailbox.cast(HealthTick())
        except MailboxFull:
            pass  # busy: the next tick comes soon enough
        await trio.sleep(next_check_delay(policy, random.random()))
