"""Settings from the environment (config.load_settings): demo defaults, secrets kept out of
repr, and a clear ConfigError for each bad or missing variable."""

from __future__ import annotations

from typing import Any

import pytest

from auzap_actors.config import ConfigError, load_settings


def test_config_defaults_and_errors(tmp_path: Any) -> None:
    demo = load_settings({"AUZAP_DATA_DIR": str(tmp_path)})
    assert demo.demo and demo.port == 8000 and demo.health_max_failures == 3
    assert len(demo.jwt_secret) >= 32
    assert demo.jwt_secret not in repr(demo) and demo.admin_token not in repr(demo)
    with pytest.raises(ConfigError, match="EVOLUTION_API_KEY"):
        load_settings({"EVOLUTION_API_URL": "http://evo:8080"})
    with pytest.raises(ConfigError, match="AUZAP_JWT_SECRET"):
        load_settings({"EVOLUTION_API_URL": "http://evo:8080", "EVOLUTION_API_KEY": "k"})
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings({"DATABASE_URL": "mysql://x"})
    with pytest.raises(ConfigError, match="AUZAP_PORT"):
        load_settings({"AUZAP_PORT": "http"})
    with pytest.raises(ConfigError, match="AUZAP_AUTO_RECONNECT"):
        load_settings({"AUZAP_AUTO_RECONNECT": "maybe"})


REAL = {
    "EVOLUTION_API_URL": "http://evo:8080",
    "EVOLUTION_API_KEY": "evolution-key",
    "AUZAP_JWT_SECRET": "j" * 40,
    "AUZAP_WEBHOOK_SECRET": "w" * 40,
    "AUZAP_ADMIN_TOKEN": "a" * 20,
}


def test_demo_mode_only_when_nothing_real_is_configured(tmp_path: Any) -> None:
    base = {"AUZAP_DATA_DIR": str(tmp_path)}
    assert load_settings(base).demo
    assert load_settings({**base, "AUZAP_DEMO": "1"}).demo
    assert not load_settings({**base, **REAL}).demo
    # Anything real without Evolution: refused, never a demo with real secrets or data.
    for name in ("DATABASE_URL", "AUZAP_JWT_SECRET", "AUZAP_WEBHOOK_SECRET", "AUZAP_ADMIN_TOKEN"):
        value = "postgresql://db/x" if name == "DATABASE_URL" else "s" * 40
        with pytest.raises(ConfigError, match="EVOLUTION_API_URL is required"):
            load_settings({**base, name: value})
        with pytest.raises(ConfigError, match=f"AUZAP_DEMO=1 cannot be used with {name}"):
            load_settings({**base, name: value, "AUZAP_DEMO": "1"})
    with pytest.raises(ConfigError, match="EVOLUTION_API_URL is required"):
        load_settings({**base, "AUZAP_DEMO": "0"})


def test_the_webhook_secret_must_differ_from_the_jwt_secret() -> None:
    with pytest.raises(ConfigError, match="AUZAP_WEBHOOK_SECRET must differ"):
        load_settings({**REAL, "AUZAP_WEBHOOK_SECRET": REAL["AUZAP_JWT_SECRET"]})
