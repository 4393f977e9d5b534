"""The observability settings (README's settings table): log format and level, and the optional
protection of /metrics, each validated with one clear line."""

from __future__ import annotations

import pytest

from auzap_actors.config import ConfigError, load_settings

REAL = {
    "EVOLUTION_API_URL": "http://evo:8080",
    "EVOLUTION_API_KEY": "evolution-key",
    "AUZAP_JWT_SECRET": "j" * 40,
    "AUZAP_WEBHOOK_SECRET": "w" * 40,
    "AUZAP_ADMIN_TOKEN": "a" * 20,
}


def test_log_settings() -> None:
    default = load_settings(REAL)
    assert (default.log_format, default.log_level) == ("auto", "info")
    chosen = load_settings({**REAL, "AUZAP_LOG_FORMAT": "JSON", "AUZAP_LOG_LEVEL": "debug"})
    assert (chosen.log_format, chosen.log_level) == ("json", "debug")
    with pytest.raises(ConfigError, match="AUZAP_LOG_FORMAT must be one of auto, json, text"):
        load_settings({**REAL, "AUZAP_LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="AUZAP_LOG_LEVEL"):
        load_settings({**REAL, "AUZAP_LOG_LEVEL": "loud"})


def test_metrics_auth_settings() -> None:
    open_ = load_settings(REAL)
    assert not open_.metrics_require_auth and open_.metrics_token is None
    admin_only = load_settings({**REAL, "AUZAP_METRICS_REQUIRE_AUTH": "1"})
    assert admin_only.metrics_require_auth and admin_only.metrics_token is None
    token = "m" * 24
    with_token = load_settings({**REAL, "AUZAP_METRICS_TOKEN": token})
    assert with_token.metrics_require_auth and with_token.metrics_token == token
    assert token not in repr(with_token)
    with pytest.raises(ConfigError, match="AUZAP_METRICS_TOKEN must be at least 16"):
        load_settings({**REAL, "AUZAP_METRICS_TOKEN": "short"})
    with pytest.raises(ConfigError, match="AUZAP_METRICS_TOKEN must differ"):
        load_settings({**REAL, "AUZAP_METRICS_TOKEN": REAL["AUZAP_ADMIN_TOKEN"]})
    with pytest.raises(ConfigError, match="AUZAP_METRICS_REQUIRE_AUTH"):
        load_settings({**REAL, "AUZAP_METRICS_REQUIRE_AUTH": "perhaps"})
