"""What the HTTP front needs from the rest of the service, handed over by the launcher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..actors.hub import Hub
from ..actors.service import InstanceService, UserRef
from ..actors.supervisor import Supervisor
from ..config import Settings
from ..store.inbox import InboxWriter


@dataclass
class Services:
    settings: Settings
    pool: Any
    supervisor: Supervisor
    instances: InstanceService
    hub: Hub
    inbox_writer: InboxWriter
    now: Callable[[], float]
    started_at: float
    simulator_url: str | None = None  # demo mode only: the in-process Evolution simulator
    demo_user: UserRef | None = None
    extra: dict[str, Any] = field(default_factory=dict)
