"""Who may send us webhooks (CONTRACT §2), as pure functions.

Each instance's Evolution webhook config carries its own secret, derived from the master
`AUZAP_WEBHOOK_SECRET`: whoever can read one instance's config (its token holder, an Evolution
Manager user) can forge events for that instance only.  The master secret is never handed to
Evolution; it stays valid for every instance (operators' tools, replays).

Evolution's `jwt_key` header mode sends `Authorization: Bearer <HS256 JWT>` with the claims
`app: "evolution"` and `action: "webhook"` and a lifetime of 10 minutes; a token without those
claims, or one that lives longer, is not Evolution's.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

WEBHOOK_JWT_LIFETIME_S = 600
CLOCK_SKEW_S = 60


def instance_secret(master: str, instance_name: str) -> str:
    """The webhook secret of one instance: hex HMAC-SHA256 of its name under the master."""
    return hmac.new(master.encode(), instance_name.encode(), hashlib.sha256).hexdigest()


def accepted_secrets(master: str, instance_name: str) -> tuple[str, str]:
    """The secrets valid for events naming `instance_name`: its own, and the master."""
    return instance_secret(master, instance_name), master


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an absent value never matches."""
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def webhook_claims_problem(claims: Mapping[str, Any]) -> str | None:
    """Why decoded JWT claims are not an Evolution webhook's (None: they are).

    The signature and `exp` are checked by the caller; this checks what Evolution puts in."""
    if claims.get("app") != "evolution" or claims.get("action") != "webhook":
        return "the token is not an Evolution webhook token (app/action claims)"
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float):
        return "the token has no numeric iat and exp"
    if exp - iat > WEBHOOK_JWT_LIFETIME_S + CLOCK_SKEW_S:
        return "the token lives longer than an Evolution webhook token"
    return None
