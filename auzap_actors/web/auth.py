"""Authentication: user JWTs (Supabase-compatible), the admin token, webhook secrets.

A user token is verified by the algorithm its header names, and only by the key that
algorithm belongs to: HS256 with the shared secret (Supabase's legacy JWT secret), ES256/RS256
with the JWKS key its `kid` names (Supabase's signing keys), each JWKS key pinned to its own
algorithm.  `none` and every other algorithm are refused before any key is looked at.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from jwt import PyJWK
from werkzeug.datastructures import Headers

from ..actors.facade import UserRef
from ..config import Settings
from ..core.webhook import WEBHOOK_SECRET_HEADER
from ..core.webhook_auth import accepted_secrets, same_secret, webhook_claims_problem
from .jwks import ASYMMETRIC_ALGORITHMS, JwksKeyStore

ALGORITHMS = ["HS256"]  # the shared secrets' one algorithm; never "none"


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


def _header_of(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"The token is invalid: {exc}.", "invalid_token") from None


def _expiry(value: Any) -> float:
    # PyJWT validated `exp` as int(value), so a numeric string ("1924992000") passed too: the
    # same reading here, or the WebSocket would never learn when to close.
    try:
        return float(int(value))
    except (ValueError, TypeError, OverflowError):
        raise AuthError("The token's exp claim is not a number.", "invalid_token") from None


def decode_user_token(
    token: str | None,
    secret: str,
    *,
    signing_key: PyJWK | None = None,
    issuer: str | None = None,
) -> UserRef:
    """The user a bearer token names; raises AuthError (401) for anything doubtful.

    An HS256 token is checked with `secret`; an ES256/RS256 one with `signing_key`, the JWKS
    key its `kid` names (the caller looked it up: `UserTokens.authenticate`), which must be
    pinned to that same algorithm.  `exp` and a UUID `sub` are required, and `iss` must equal
    `issuer` when one is given.
    """
    if not token:
        raise AuthError("A bearer token is required.")
    alg = _header_of(token).get("alg")
    key: Any
    if alg == "HS256":
        key = secret
    elif alg in ASYMMETRIC_ALGORITHMS:
        if signing_key is None:
            raise AuthError("The token's signing key (kid) is not known here.", "invalid_token")
        # The key's pinned algorithm, never the header's word: an RS256 header naming an EC
        # key (or the reverse) is refused here, whatever the PyJWT version does with it.
        if signing_key.algorithm_name != alg:
            raise AuthError(
                f"The token's algorithm {alg} does not match its key's.", "invalid_token"
            )
        key = signing_key.key
    else:
        shown = str(alg)[:16]
        raise AuthError(f"The token's algorithm {shown!r} is not accepted.", "invalid_token")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[alg],
            issuer=issuer,
            # Supabase puts aud=authenticated; we check the signature and expiry, not audience.
            options={
                "require": ["exp", "sub", "iss"] if issuer else ["exp", "sub"],
                "verify_aud": False,
                "enforce_minimum_key_length": True,
            },
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
    return UserRef(
        user_id,
        _uuid_claim(org, "organization_id") if org else None,
        _expiry(claims["exp"]),
    )


class UserTokens:
    """How this service verifies user tokens: the HS256 secret, the JWKS keys (when
    AUZAP_JWKS_URL is set) and the expected issuer (when AUZAP_JWT_ISSUER is set)."""

    def __init__(
        self, secret: str, keys: JwksKeyStore | None = None, issuer: str | None = None
    ) -> None:
        self.secret = secret
        self.keys = keys
        self.issuer = issuer

    @classmethod
    def from_settings(cls, settings: Settings) -> UserTokens:
        keys = None
        if settings.jwks_url:
            keys = JwksKeyStore(settings.jwks_url, refresh_interval_s=settings.jwks_refresh_s)
        return cls(settings.jwt_secret, keys, settings.jwt_issuer)

    def __repr__(self) -> str:
        return f"<UserTokens HS256{' + ' + repr(self.keys) if self.keys else ''}>"

    async def authenticate(self, token: str | None) -> UserRef:
        """The user a bearer token names; raises AuthError (401) otherwise.

        An ES256/RS256 token's key is looked up by its `kid`, which may fetch the JWKS once
        (see `JwksKeyStore.key_for`: rate-limited, never raises for a failed fetch).
        """
        signing_key = None
        if token and self.keys is not None:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.InvalidTokenError:
                header = {}  # decode_user_token says what is wrong with it
            kid = header.get("kid")
            if header.get("alg") in ASYMMETRIC_ALGORITHMS and isinstance(kid, str) and kid:
                signing_key = await self.keys.key_for(kid)
        return decode_user_token(token, self.secret, signing_key=signing_key, issuer=self.issuer)


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


def check_metrics(headers: HeaderLookup, admin_token: str, metrics_token: str | None) -> None:
    """`/metrics` when AUZAP_METRICS_REQUIRE_AUTH (or a metrics token) is set: the admin
    token, or the scrape-only metrics token."""
    given = bearer_token(headers)
    if same_secret(given, admin_token):
        return
    if metrics_token is not None and same_secret(given, metrics_token):
        return
    raise AuthError("The metrics token (or the admin token) is missing or wrong.")


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
