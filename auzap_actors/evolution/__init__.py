"""Evolution API v2: HTTP client, errors, result types (the simulator lives in
``auzap_actors.evolution.simulator`` and is not imported here, to keep quart out of
the client's import graph)."""

from .client import EvolutionClient
from .errors import (
    EvolutionBadRequest,
    EvolutionError,
    EvolutionForbidden,
    EvolutionNotFound,
    EvolutionServerError,
    EvolutionUnauthorized,
    EvolutionUnavailable,
)
from .types import ConnectResult, CreatedInstance, InstanceInfo, QrCode, WebhookConfig

__all__ = [
    "ConnectResult",
    "CreatedInstance",
    "EvolutionBadRequest",
    "EvolutionClient",
    "EvolutionError",
    "EvolutionForbidden",
    "EvolutionNotFound",
    "EvolutionServerError",
    "EvolutionUnauthorized",
    "EvolutionUnavailable",
    "InstanceInfo",
    "QrCode",
    "WebhookConfig",
]
