"""A fake Evolution API v2 server (REST + webhooks + ``/_sim`` control API) for tests
and demo mode. See ``core.Simulator`` for the state machine and ``webhooks`` for the
delivery rules; ``/_sim/faults`` also takes ``webhook_duplicates: n``, which sends
every webhook n extra times with an identical body."""

from .app import create_simulator_app
from .core import Faults, Simulator
from .model import SimulatorConfig
from .serve import serve_simulator

__all__ = ["Faults", "Simulator", "SimulatorConfig", "create_simulator_app", "serve_simulator"]
