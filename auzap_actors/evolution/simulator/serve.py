"""Run the simulator on a real socket with hypercorn."""

from __future__ import annotations

import logging

import hypercorn.trio
import trio
from hypercorn.config import Config

from .app import create_simulator_app
from .core import Simulator
from .model import SimulatorConfig

log = logging.getLogger(__name__)


def _base_url(bind: str, host: str) -> str:
    # hypercorn reports e.g. "http://127.0.0.1:43117"; a wildcard host is not an
    # address a client can use, so point at loopback instead.
    port = bind.rsplit(":", 1)[1]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


async def serve_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a fresh :class:`Simulator`; ``task_status.started(base_url)`` once
    listening. Runs until cancelled."""
    sim = Simulator(config)
    app = create_simulator_app(sim)
    hyper = Config()
    hyper.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    hyper.accesslog = None
    # Our logging setup, not a second handler of hypercorn's own (each line printed twice).
    hyper.errorlog = logging.getLogger("hypercorn.error")
    hyper.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        binds: list[str] = await nursery.start(hypercorn.trio.serve, app, hyper)
        base_url = _base_url(binds[0], host)
        if config.server_url is None:
            sim.server_url = base_url
        log.info("Evolution simulator listening on %s", base_url)
        task_status.started(base_url)
