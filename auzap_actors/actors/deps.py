"""What every instance actor shares: the pool, the Evolution client, the hub, the settings of
the health policy and the node-wide limit on connects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from ..core.events import WEBHOOK_EVENTS
from ..core.health import HealthPolicy
from ..core.views import tagged
from ..core.webhook import WEBHOOK_SECRET_HEADER
from ..core.webhook_auth import instance_secret
from ..evolution.census import Census
from ..evolution.client import EvolutionClient
from ..evolution.types import WebhookConfig
from ..observability.metrics import Metrics
from .auto_reply import AutoReplyConfig
from .hub import Hub


@dataclass(slots=True)
class ActorDeps:
    pool: Any
    evolution: EvolutionClient
    hub: Hub
    webhook_secret: str
    webhook_base_url: str = ""  # set by the launcher once the HTTP port is bound
    now: Callable[[], float] = trio.current_time  # replaced by wall-clock time in serve
    health_policy: HealthPolicy = field(default_factory=HealthPolicy)
    # Node-wide bound on concurrent connect/restart calls (boot resumes, reconnects, users).
    connect_limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(8))
    # Node-wide bound on the boot's Evolution calls (webhook sync, boot and reconcile checks):
    # thousands of actors booting at once take turns here, and the periodic checks of those
    # already running keep the rest of the client's connections (evolution_side.py).
    boot_gate: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(16))
    # One fetchInstances of every instance answering the periodic checks of healthy ones
    # (evolution/census.py); None: each check asks for its instance alone.
    census: Census | None = None
    # The service's metrics and per-instance journal (a private one in unit tests).
    metrics: Metrics = field(default_factory=lambda: Metrics(process=False))
    # The responder, its timings and the per-service counts (actors/auto_reply.py).
    auto_reply: AutoReplyConfig = field(default_factory=AutoReplyConfig)
    # Frames name their instance (`instance_name`) when a user may own several
    # (AUZAP_MAX_INSTANCES_PER_USER above 1); with one, they stay exactly as they were.
    name_frames: bool = False

    def frame(self, data: Any, instance_name: str) -> Any:
        """A frame's data as this service publishes it (see `name_frames`)."""
        return tagged(data, instance_name) if self.name_frames else data

    def webhook_config(self, instance_name: str) -> WebhookConfig:
        """What Evolution must call back for one instance: our URL, with that instance's own
        secret (never the master)."""
        return WebhookConfig(
            url=f"{self.webhook_base_url}/api/webhook/whatsapp",
            events=WEBHOOK_EVENTS,
            headers={WEBHOOK_SECRET_HEADER: instance_secret(self.webhook_secret, instance_name)},
        )
