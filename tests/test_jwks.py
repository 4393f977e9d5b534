"""Supabase's signing keys: ES256/RS256 user tokens verified against a JWKS served here, on
loopback, with keys made in the test.  The endpoint counts its requests, so "at most one fetch
per interval" is a number read off the server, not an assumption."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypercorn.trio
import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypercorn.config import Config
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from quart import Response
from quart_trio import QuartTrio
from trio_websocket import ConnectionRejected, open_websocket_url

from auzap_actors.config import ConfigError, load_settings
from auzap_actors.web.auth import decode_user_token
from auzap_actors.web.jwks import JwksError, JwksKeyStore, pinned_algorithm, signing_keys

from .conftest import JWT_SECRET, ServiceRunner
from .helpers import auth, http, next_frame

JWKS_PATH = "/auth/v1/.well-known/jwks.json"
ISSUER = "https://project-ref.supabase.co/auth/v1"


# -- keys and tokens -------------------------------------------------------------------


@dataclass
class SigningKey:
    kid: str
    alg: str  # ES256 or RS256
    private: Any

    @classmethod
    def es256(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def rs256(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public key as Supabase publishes it (`alg`, `use`, `key_ops` included)."""
        algorithm = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        found: dict[str, Any] = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        found.update(kid=self.kid, alg=self.alg, use="sig", key_ops=["verify"], ext=True)
        found.update(extra)
        return {k: v for k, v in found.items() if v is not None}

    def public_pem(self) -> bytes:
        pem: bytes = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def token(self, user: uuid.UUID, kid: str | None = None, **claims: Any) -> str:
        payload: dict[str, Any] = {
            "sub": str(user),
            "exp": int(time.time()) + 3600,
            "aud": "authenticated",
            "role": "authenticated",
        }
        payload.update(claims)
        return jwt.encode(
            payload, self.private, algorithm=self.alg, headers={"kid": kid or self.kid}
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token PyJWT would refuse to make: HS256 keyed with public bytes, or `alg: none`."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if hmac_key is None:
        return signing_input + "."
    mac = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


# -- the JWKS endpoint -------------------------------------------------------------------


class JwksServer:
    """Serves `document` at JWKS_PATH and counts every request; `status` and `delay_s`
    simulate an identity provider that is down or slow."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": []}
        self.requests = 0
        self.status = 200
        self.delay_s = 0.0
        self.raw: bytes | None = None  # served instead of `document` when set
        self.chunked = False  # `raw` in chunks, without a Content-Length
        self.url = ""

    def publish(self, *keys: SigningKey) -> None:
        self.document = {"keys": [k.jwk() for k in keys]}

    def app(self) -> QuartTrio:
        app = QuartTrio("jwks")

        @app.get(JWKS_PATH)
        async def jwks() -> Response:
            self.requests += 1
            if self.delay_s:
                await trio.sleep(self.delay_s)
            if self.status != 200:
                return Response("unavailable", status=self.status)
            if self.raw is not None and self.chunked:
                raw = self.raw

                async def chunks() -> AsyncIterator[bytes]:
                    for i in range(0, len(raw), 1024):
                        yield raw[i : i + 1024]

                return Response(chunks(), content_type="application/json")
            if self.raw is not None:
                return Response(self.raw, content_type="application/json")
            return Response(json.dumps(self.document), content_type="application/json")

        return app


@pytest.fixture
async def jwks_server(nursery: trio.Nursery) -> JwksServer:
    server = JwksServer()
    app = server.app()
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = None
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(hypercorn.trio.serve, app, config)
    server.url = binds[0] + JWKS_PATH
    return server


async def _status(client: Any, token: str) -> int:
    answer = await client.get("/api/whatsapp/instance", headers=auth(token))
    # 404 "no instance yet" proves the token passed; anything but 401 here is a bug.
    assert answer.status_code in (401, 404), answer.text
    return int(answer.status_code)


async def _ws_first_frame(base_url: str, token: str) -> dict[str, Any]:
    url = base_url.replace("http://", "ws://") + f"/ws?token={token}"
    async with open_websocket_url(url) as ws:
        return await next_frame(ws)


async def _ws_refused(base_url: str, token: str) -> int:
    url = base_url.replace("http://", "ws://") + f"/ws?token={token}"
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url):
            pass
    return int(rejected.value.status_code)


# -- the settings ------------------------------------------------------------------------


def test_the_jwks_settings(tmp_path: Any) -> None:
    demo = load_settings({"AUZAP_DATA_DIR": str(tmp_path)})
    assert (demo.jwks_url, demo.jwt_issuer, demo.jwks_refresh_s) == (None, None, 60.0)
    real = {
        "AUZAP_DATA_DIR": str(tmp_path),
        "EVOLUTION_API_URL": "http://evolution:8080",
        "EVOLUTION_API_KEY": "evolution-key",
        "AUZAP_JWT_SECRET": "j" * 40,
        "AUZAP_WEBHOOK_SECRET": "w" * 40,
        "AUZAP_ADMIN_TOKEN": "a" * 20,
    }
    configured = load_settings(
        {
            **real,
            "AUZAP_JWKS_URL": f"https://project-ref.supabase.co{JWKS_PATH}",
            "AUZAP_JWT_ISSUER": f" {ISSUER} ",
            "AUZAP_JWKS_REFRESH_S": "300",
        }
    )
    assert configured.jwks_url == f"https://project-ref.supabase.co{JWKS_PATH}"
    assert (configured.jwt_issuer, configured.jwks_refresh_s) == (ISSUER, 300.0)
    with pytest.raises(ConfigError, match="AUZAP_JWKS_URL"):
        load_settings({**real, "AUZAP_JWKS_URL": "ftp://project-ref.supabase.co/jwks.json"})
    with pytest.raises(ConfigError, match="AUZAP_JWKS_URL"):
        load_settings({**real, "AUZAP_JWKS_URL": "project-ref.supabase.co/jwks.json"})
    with pytest.raises(ConfigError, match="AUZAP_JWKS_REFRESH_S"):
        load_settings({**real, "AUZAP_JWKS_REFRESH_S": "0"})


# -- the key policy, no network ----------------------------------------------------------


def test_each_jwk_is_pinned_to_its_own_algorithm_or_skipped() -> None:
    es, rs = SigningKey.es256("e1"), SigningKey.rs256("r1")
    assert pinned_algorithm(es.jwk()) == "ES256"
    assert pinned_algorithm(es.jwk(alg=None, use=None, key_ops=None)) == "ES256"
    assert pinned_algorithm(rs.jwk()) == "RS256"
    assert pinned_algorithm(rs.jwk(alg=None)) == "RS256"
    # A JWK `alg` that does not fit the key, or is not ES256/RS256, disqualifies it.
    assert pinned_algorithm(es.jwk(alg="RS256")) is None
    assert pinned_algorithm(rs.jwk(alg="HS256")) is None
    assert pinned_algorithm(rs.jwk(alg="RS512")) is None
    assert pinned_algorithm(es.jwk(alg="none")) is None
    assert pinned_algorithm(es.jwk(use="enc")) is None
    assert pinned_algorithm(es.jwk(key_ops=["encrypt"])) is None
    assert pinned_algorithm({"kty": "oct", "k": "c2VjcmV0", "kid": "o", "alg": "HS256"}) is None
    p384 = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()).public_key(), as_dict=True)
    assert pinned_algorithm(p384) is None


def test_a_jwk_set_keeps_only_usable_keys_by_kid() -> None:
    es, rs = SigningKey.es256("e1"), SigningKey.rs256("r1")
    short_rsa = SigningKey("short", "RS256", rsa.generate_private_key(65537, 1024))
    document = {
        "keys": [
            es.jwk(),
            rs.jwk(alg=None),
            {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ", "kid": "sym", "alg": "HS256"},
            es.jwk(kid=None),
            short_rsa.jwk(),
            "not a key",
        ]
    }
    keys = signing_keys(document)
    assert sorted(keys) == ["e1", "r1"]
    assert (keys["e1"].algorithm_name, keys["r1"].algorithm_name) == ("ES256", "RS256")
    with pytest.raises(JwksError):
        signing_keys({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}]})
    with pytest.raises(JwksError):
        signing_keys(["not", "a", "set"])


def test_a_numeric_string_exp_still_gives_the_expiry() -> None:
    # PyJWT accepts exp "1924992000" (it reads int(exp)); the socket must learn it as well.
    user = uuid.uuid4()
    token = jwt.encode({"sub": str(user), "exp": "1924992000"}, JWT_SECRET, algorithm="HS256")
    found = decode_user_token(token, JWT_SECRET)
    assert found.user_id == user
    assert found.expires_at == 1924992000.0


# -- the key store against a real endpoint ----------------------------------------------


async def test_fifty_unknown_kids_at_once_make_one_fetch(jwks_server: JwksServer) -> None:
    key = SigningKey.es256("k1")
    jwks_server.publish(key)
    store = JwksKeyStore(jwks_server.url, refresh_interval_s=60.0)
    found: list[object] = []

    async def ask(kid: str) -> None:
        found.append(await store.key_for(kid))

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(ask, f"unknown-{i}")
    assert found == [None] * 50
    for i in range(50):
        assert await store.key_for(f"later-{i}") is None
    assert (jwks_server.requests, store.fetches, store.failures) == (1, 1, 0)
    # The one fetch brought the real key along.
    k1 = await store.key_for("k1")
    assert k1 is not None and k1.algorithm_name == "ES256"
    assert jwks_server.requests == 1
    assert repr(store) == f"<JwksKeyStore {jwks_server.url} [keys: 1 | fetches: 1, failures: 0]>"


async def test_failed_fetches_keep_the_old_keys(jwks_server: JwksServer) -> None:
    old, new = SigningKey.es256("old"), SigningKey.es256("new")
    jwks_server.publish(old)
    store = JwksKeyStore(jwks_server.url, refresh_interval_s=0.05, timeout_s=0.3, max_bytes=4096)
    assert await store.key_for("old") is not None
    jwks_server.publish(old, new)
    for label, status, delay_s in (("down", 503, 0.0), ("slow", 200, 1.0)):
        jwks_server.status, jwks_server.delay_s = status, delay_s
        await trio.sleep(0.06)  # past the refresh interval
        assert await store.key_for("new") is None, label
        assert await store.key_for("old") is not None, label
    jwks_server.status, jwks_server.delay_s = 200, 0.0
    # Larger than max_bytes (said by Content-Length, or found while reading chunks), then
    # not JSON, then no usable key: failures too.
    too_large = json.dumps({"keys": [new.jwk(pad="x" * 5000)]}).encode()
    for label, raw, chunked in (
        ("too_large", too_large, False),
        ("too_large_chunked", too_large, True),
        ("not_json", b"<html>", False),
        ("no_usable_key", b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "new"}]}', False),
    ):
        jwks_server.raw, jwks_server.chunked = raw, chunked
        if chunked:  # the store must find the size out while reading
            async with httpx.AsyncClient() as probe:
                assert "content-length" not in (await probe.get(jwks_server.url)).headers
        await trio.sleep(0.06)
        assert await store.key_for("new") is None, label
        assert await store.key_for("old") is not None, label
    jwks_server.raw, jwks_server.chunked = None, False
    assert (store.fetches, store.failures) == (7, 6)
    jwks_server.publish(new)
    await trio.sleep(0.06)
    assert await store.key_for("new") is not None
    assert store.kids == ["new"]  # the set replaced, not merged: "old" was withdrawn


async def test_a_caller_that_gives_up_does_not_waste_the_fetch(jwks_server: JwksServer) -> None:
    jwks_server.publish(SigningKey.es256("k1"))
    jwks_server.delay_s = 0.3
    store = JwksKeyStore(jwks_server.url, refresh_interval_s=60.0)
    started = trio.current_time()
    with trio.move_on_after(0.05) as gave_up:
        await store.key_for("k1")
    # The fetch is shielded from its caller, who is cancelled once it ends: the interval's
    # one fetch still brought the key for the next caller.
    assert gave_up.cancelled_caught
    assert 0.3 <= trio.current_time() - started < 2.0
    assert await store.key_for("k1") is not None
    assert (jwks_server.requests, store.fetches, store.failures) == (1, 1, 0)


# -- the service: HTTP and WebSocket ----------------------------------------------------


async def test_es256_and_rs256_tokens_pass_and_a_rotated_key_is_learnt(
    runner: ServiceRunner, jwks_server: JwksServer
) -> None:
    es, rs = SigningKey.es256("es-1"), SigningKey.rs256("rs-1")
    jwks_server.publish(es, rs)
    service = await runner.start(AUZAP_JWKS_URL=jwks_server.url, AUZAP_JWKS_REFRESH_S="0.2")
    user = uuid.uuid4()
    async with http(service.url) as client:
        # (a) ES256 on HTTP and on the socket; (d) RS256 too.
        assert await _status(client, es.token(user)) == 404
        assert (await _ws_first_frame(service.url, es.token(user))) == {
            "type": "snapshot",
            "data": None,
        }
        assert await _status(client, rs.token(user)) == 404
        assert (await _ws_first_frame(service.url, rs.token(user)))["type"] == "snapshot"
        # The legacy HS256 secret still works beside the JWKS.
        legacy = {"sub": str(user), "exp": int(time.time()) + 60}
        assert await _status(client, jwt.encode(legacy, JWT_SECRET, algorithm="HS256")) == 404
        assert jwks_server.requests == 1
        # (b) Rotation: the provider now publishes a new key under a new kid.
        rotated = SigningKey.es256("es-2")
        jwks_server.publish(rotated, rs)
        await trio.sleep(0.25)  # past AUZAP_JWKS_REFRESH_S since the first fetch
        assert await _status(client, rotated.token(user)) == 404
        assert (await _ws_first_frame(service.url, rotated.token(user)))["type"] == "snapshot"
        assert jwks_server.requests == 2
        # The withdrawn key is gone with the old set.
        assert await _status(client, es.token(user)) == 401


async def test_unknown_kids_and_forged_algorithms_are_refused(
    runner: ServiceRunner, jwks_server: JwksServer
) -> None:
    es, rs = SigningKey.es256("es-1"), SigningKey.rs256("rs-1")
    jwks_server.publish(es, rs)
    service = await runner.start(AUZAP_JWKS_URL=jwks_server.url)  # default: 60 s interval
    user = uuid.uuid4()
    stranger = SigningKey.es256("not-published")
    async with http(service.url) as client:
        # (c) 50 tokens naming kids the JWKS does not have, all at once, then 50 in a row.
        statuses: list[int] = []

        async def one(i: int) -> None:
            statuses.append(await _status(client, stranger.token(user, kid=f"unknown-{i}")))

        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(one, i)
        for i in range(50, 100):
            statuses.append(await _status(client, stranger.token(user, kid=f"unknown-{i}")))
        assert statuses == [401] * 100
        assert await _ws_refused(service.url, stranger.token(user)) == 401
        assert jwks_server.requests == 1
        assert await _status(client, es.token(user)) == 404  # that one fetch got the real keys

        claims = {"sub": str(user), "exp": int(time.time()) + 3600}
        refused = {
            # A known kid, signed by a key that is not the one published under it.
            "wrong_key": stranger.token(user, kid="es-1"),
            # (e) HS256 keyed with the public key's bytes, as PEM and as the JWK itself.
            "hs256_pem": forged({"alg": "HS256", "kid": "rs-1"}, claims, rs.public_pem()),
            "hs256_jwk": forged(
                {"alg": "HS256", "kid": "es-1"}, claims, json.dumps(es.jwk()).encode()
            ),
            "alg_none": forged({"alg": "none", "kid": "es-1"}, claims, None),
            # An algorithm the key is not pinned to: RS256 header naming the EC key and back.
            "rs256_on_ec_kid": rs.token(user, kid="es-1"),
            "es256_on_rsa_kid": es.token(user, kid="rs-1"),
            "no_kid": jwt.encode(claims, es.private, algorithm="ES256"),
            "es384": jwt.encode(
                claims,
                ec.generate_private_key(ec.SECP384R1()),
                algorithm="ES384",
                headers={"kid": "es-1"},
            ),
            "expired": es.token(user, exp=int(time.time()) - 60),
            "sub_not_uuid": es.token(user, sub="admin"),
        }
        for label, token in refused.items():
            answer = await client.get("/api/whatsapp/instance", headers=auth(token))
            assert answer.status_code == 401, (label, answer.text)
            assert answer.json()["error"]["code"] in (
                "invalid_token",
                "token_expired",
                "unauthorized",
            ), label
            assert await _ws_refused(service.url, token) == 401, label
        assert jwks_server.requests == 1


async def test_the_issuer_is_checked_when_configured(
    runner: ServiceRunner, jwks_server: JwksServer
) -> None:
    es = SigningKey.es256("es-1")
    jwks_server.publish(es)
    service = await runner.start(AUZAP_JWKS_URL=jwks_server.url, AUZAP_JWT_ISSUER=ISSUER)
    user = uuid.uuid4()
    now = int(time.time())
    async with http(service.url) as client:
        assert await _status(client, es.token(user, iss=ISSUER)) == 404
        assert await _status(client, es.token(user, iss="https://other.supabase.co/auth/v1")) == 401
        assert await _status(client, es.token(user)) == 401  # no iss at all
        hs = {"sub": str(user), "exp": now + 60}
        assert await _status(client, jwt.encode(hs, JWT_SECRET, algorithm="HS256")) == 401
        with_iss = jwt.encode({**hs, "iss": ISSUER}, JWT_SECRET, algorithm="HS256")
        assert await _status(client, with_iss) == 404
        assert (await _ws_first_frame(service.url, es.token(user, iss=ISSUER)))["type"] == (
            "snapshot"
        )
        assert await _ws_refused(service.url, es.token(user)) == 401


async def test_without_a_jwks_url_only_hs256_is_accepted(runner: ServiceRunner) -> None:
    es = SigningKey.es256("es-1")
    service = await runner.start()
    async with http(service.url) as client:
        assert await _status(client, es.token(uuid.uuid4())) == 401
