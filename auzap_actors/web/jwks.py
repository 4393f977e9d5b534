"""The identity provider's public signing keys (JWKS), fetched over HTTP and cached.

Supabase's signing keys (CONTRACT §2): access tokens are ES256 or RS256, their header names
the key by `kid`, and the public keys are served at `<project>/auth/v1/.well-known/jwks.json`.

The rules:

- Each key is pinned to one algorithm when the set is loaded (`pinned_algorithm`): ES256 for
  an EC P-256 key, RS256 for an RSA key of at least 2048 bits, or the JWK's own `alg` when it
  names one of those two and fits the key.  Anything else in the set (symmetric `oct` keys,
  other curves, encryption keys) is skipped, so a public key can never verify an HS* token.
- The set is fetched when a token names a `kid` we do not have, or when the cached set is
  older than `max_age_s` (a key removed from the set stops being accepted).  Whatever the
  number of such tokens, at most one fetch starts per `refresh_interval_s`; concurrent
  callers wait for the one fetch in flight instead of starting their own.
- A failed fetch (network, status, size, JSON, no usable key) keeps the keys we had; it is
  logged and never raised to a request: the caller sees `None` for a kid it cannot find.
- No HTTP client is held between fetches (at most one per interval), so there is nothing to
  close at shutdown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import trio
from jwt import PyJWK
from jwt.exceptions import PyJWTError

log = logging.getLogger(__name__)

# The only algorithms a JWKS key may be used with (CONTRACT §2: ES256/RS256, nothing else).
ASYMMETRIC_ALGORITHMS = ("ES256", "RS256")
MIN_RSA_BITS = 2048


class JwksError(Exception):
    """The JWKS could not be fetched or holds no usable key; the message says why."""


def pinned_algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm a JWK may verify with, or None when the key is not usable here.

    Decided from the key's own type (and curve) first; a JWK `alg` that disagrees with it,
    or names anything but ES256/RS256, disqualifies the key rather than being trusted.
    """
    use = jwk.get("use")
    if use is not None and use != "sig":
        return None  # an encryption key is not a signing key
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if kty == "EC" and jwk.get("crv") == "P-256":
        natural = "ES256"
    elif kty == "RSA":
        natural = "RS256"
    else:
        return None
    if alg is not None and alg != natural:
        return None
    return natural


def signing_keys(document: Any) -> dict[str, PyJWK]:
    """The usable keys of a JWKS document by `kid`; raises JwksError if there are none.

    Keys without a `kid` are skipped (tokens choose their key by kid); of two keys with one
    kid, the first wins.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksError("the document is not a JWK set (no `keys` list)")
    found: dict[str, PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid, algorithm = jwk.get("kid"), pinned_algorithm(jwk)
        if not isinstance(kid, str) or not kid or algorithm is None or kid in found:
            continue
        try:
            key = PyJWK(jwk, algorithm=algorithm)
        except PyJWTError as exc:
            log.warning("JWKS key %r skipped: %s", kid, exc)
            continue
        if algorithm == "RS256" and getattr(key.key, "key_size", 0) < MIN_RSA_BITS:
            log.warning("JWKS key %r skipped: RSA key shorter than %d bits", kid, MIN_RSA_BITS)
            continue
        found[kid] = key
    if not found:
        raise JwksError("the JWK set holds no usable ES256/RS256 signing key")
    return found


class JwksKeyStore:
    """The cached signing keys of one JWKS URL.

    `key_for(kid)` is the whole interface a request needs; `fetches` and `failures` count
    every fetch started and every one that failed (tests and `__repr__` read them).
    """

    def __init__(
        self,
        url: str,
        *,
        refresh_interval_s: float = 60.0,
        max_age_s: float = 600.0,
        timeout_s: float = 5.0,
        max_bytes: int = 256 * 1024,
    ) -> None:
        self.url = url
        self.refresh_interval_s = refresh_interval_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.fetches = 0
        self.failures = 0
        self._keys: dict[str, PyJWK] = {}
        self._loaded_at: float | None = None  # trio clock of the last successful fetch
        self._attempted_at: float | None = None  # trio clock of the last fetch started
        self._lock = trio.Lock()

    def __repr__(self) -> str:
        return (
            f"<JwksKeyStore {self.url} [keys: {len(self._keys)} | "
            f"fetches: {self.fetches}, failures: {self.failures}]>"
        )

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def _fresh(self, now: float) -> bool:
        return self._loaded_at is not None and now - self._loaded_at < self.max_age_s

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.refresh_interval_s

    async def key_for(self, kid: str) -> PyJWK | None:
        """The key named `kid`, fetching the set first when it lacks the kid or is stale and
        no fetch started within the last `refresh_interval_s`.

        Never raises for a fetch failure (the old keys stay).  Cancellation while waiting for
        another caller's fetch is immediate.  The fetch itself is shielded, so a client that
        hangs up cannot spend the interval's one fetch for nothing: its caller is cancelled
        only when the fetch ends, at most `timeout_s` later (also at shutdown).
        """
        if kid in self._keys and self._fresh(trio.current_time()):
            return self._keys[kid]
        async with self._lock:
            # Re-decided under the lock: the fetch we waited for may have brought the kid.
            now = trio.current_time()
            if (kid not in self._keys or not self._fresh(now)) and self._may_fetch(now):
                self._attempted_at = now
                with trio.CancelScope(shield=True):
                    await self._refresh()
                await trio.lowlevel.checkpoint_if_cancelled()  # the cancel the shield held
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            with trio.fail_after(self.timeout_s):
                document = await self._download()
            keys = signing_keys(document)
        except (httpx.HTTPError, trio.TooSlowError, JwksError, ValueError, RecursionError) as exc:
            self.failures += 1
            reason = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc) or repr(exc)
            log.warning(
                "JWKS fetch from %s failed (%s); keeping %d known key(s)",
                self.url,
                reason,
                len(self._keys),
            )
            return
        added = sorted(set(keys) - set(self._keys))
        removed = sorted(set(self._keys) - set(keys))
        if added or removed:
            log.info("JWKS from %s: keys added %s, removed %s", self.url, added, removed)
        self._keys = keys
        self._loaded_at = trio.current_time()

    async def _download(self) -> Any:
        """The JSON document at `url`; raises JwksError for a non-200 or oversized answer."""
        async with (
            httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as answer,
        ):
            if answer.status_code != 200:
                raise JwksError(f"HTTP {answer.status_code}")
            declared = answer.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise JwksError(f"the answer is larger than {self.max_bytes} bytes")
            # Without a usable Content-Length the body is read to its end but not kept past the
            # limit (the caller's timeout bounds the time): leaving httpx's chain of async
            # generators half-way would leave them to the garbage collector.
            body, size = bytearray(), 0
            async for chunk in answer.aiter_bytes():
                size += len(chunk)
                if size <= self.max_bytes:
                    body += chunk
            if size > self.max_bytes:
                raise JwksError(f"the answer is larger than {self.max_bytes} bytes")
        return json.loads(body)
