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
