"""Authentication: user JWTs (HS256, Supabase-compatible), the admin token, webhook secrets."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from werkzeug.datastructures import Headers

from ..actors.facade import UserRef
from ..core.webhook import WEBHOOK_SECRET_HEADER
from ..core.webhook_auth import accepted_secrets, same_secret, webhook_claims_problem

ALGORITHMS = ["HS256"]  # never "none", never anything asymmetric: one secret, one algorithm


# Request headers as quart gives them, or a plain dict (tests, the CLI).
HeaderLookup = Mapping[str, str] | Headers


class AuthError(Exception):
    def __init__(self, message: str, code: str = "unauthorized") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _uuid_claim(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise AuthError(f"The token's {name} claim is not a UUID.") from None


def decode_user_token(token: str | None, secret: str) -> UserRef:
    """The user a bearer token names; raises AuthError (401) for anything doubtful."""
    if not token:
        raise AuthError("A bearer token is required.")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=ALGORITHMS,
            # Supabase puts aud=authenticated; we check the signature and expiry, not audience.
            options={"require": ["exp", "sub"], "verify_aud": False},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("The token has expired.", "token_expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"The token is invalid: {exc}.", "invalid_token") from None
    user_id = _uuid_claim(claims.get("sub"), "sub")
    org = claims.get("organization_id")
    if org is None and isinstance(claims.get("app_metadata"), dict):
        org = claims["app_metadata"].get("organization_id")
    exp = claims.get("exp")
    return UserRef(
        user_id,
        _uuid_claim(org, "organization_id") if org else None,
        float(exp) if isinstance(exp, int | float) else None,
    )


def mint_user_token(
    secret: str,
    user_id: uuid.UUID,
    organization_id: uuid.UUID | None = None,
    ttl_s: int = 7 * 24 * 3600,
) -> str:
    """A Supabase-shaped user token (for `auzap-actors token`, the demo and tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + ttl_s,
    }
    if organization_id is not None:
        claims["app_metadata"] = {"organization_id": str(organization_id)}
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_token(headers: HeaderLookup) -> str | None:
    value = headers.get("Authorization", "") or ""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_admin(headers: HeaderLookup, admin_token: str) -> None:
    if not same_secret(bearer_token(headers), admin_token):
        raise AuthError("The admin token is missing or wrong.")


def has_webhook_credentials(headers: HeaderLookup) -> bool:
    """Whether the request carries any webhook credential at all (checked before the body is
    read: a request without one is refused at once)."""
    return bool(headers.get(WEBHOOK_SECRET_HEADER) or bearer_token(headers))


def check_webhook(headers: HeaderLookup, master: str, instance_name: str) -> None:
    """The instance's own secret (or the master) in the secret header, or Evolution's
    `jwt_key` Bearer JWT signed with one of them (CONTRACT §2); AuthError (401) otherwise."""
    secrets = accepted_secrets(master, instance_name)
    given = headers.get(WEBHOOK_SECRET_HEADER)
    if any(same_secret(given, secret) for secret in secrets):
        return
    token = bearer_token(headers)
    if token:
        for secret in secrets:
            try:
                claims = jwt.decode(
                    token, secret, algorithms=ALGORITHMS, options={"require": ["exp", "iat"]}
                )
            except jwt.InvalidTokenError:
                continue
            problem = webhook_claims_problem(claims)
            if problem is None:
                return
            raise AuthError(f"The webhook token is refused: {problem}.")
    raise AuthError("The webhook secret is missing or wrong for this instance.")
