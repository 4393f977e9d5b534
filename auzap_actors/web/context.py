"""What the HTTP front is handed by the launcher, and the one way a route reaches it."""

from __future__ import annotations

from dataclasses import dataclass

from quart import current_app

from ..actors.facade import Actors
from ..config import Settings
from .auth import UserTokens

EXTENSION = "auzap"
TOKENS = "auzap.user_tokens"  # the app's UserTokens (its JWKS cache lives as long as the app)


@dataclass(frozen=True, slots=True)
class WebContext:
    settings: Settings
    actors: Actors
    simulator_url: str | None = None  # demo mode only: the in-process Evolution simulator


def context() -> WebContext:
    """The context of the app serving the current request."""
    found: WebContext = current_app.extensions[EXTENSION]
    return found


def user_tokens() -> UserTokens:
    """How the app serving the current request verifies user tokens."""
    found: UserTokens = current_app.extensions[TOKENS]
    return found
