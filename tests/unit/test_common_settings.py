from __future__ import annotations

import pytest
from pydantic_settings import SettingsConfigDict

from lfr.common.errors import ConfigError
from lfr.common.settings import ServiceSettings, load_settings


class DemoSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_DEMO_", extra="ignore", frozen=True)
    redis_url: str = "redis://127.0.0.1:6379/0"


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFR_DEMO_PORT", "6001")
    monkeypatch.setenv("LFR_DEMO_REDIS_URL", "redis://example:1/2")
    settings = load_settings(DemoSettings)
    assert settings.port == 6001
    assert settings.redis_url == "redis://example:1/2"


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("LFR_DEMO_PORT", "not-a-number", "LFR_DEMO_PORT"),
        ("LFR_DEMO_PORT", "70000", "LFR_DEMO_PORT"),
        ("LFR_DEMO_LOG_LEVEL", "loud", "LFR_DEMO_LOG_LEVEL"),
        ("LFR_DEMO_SHUTDOWN_GRACE_S", "-1", "LFR_DEMO_SHUTDOWN_GRACE_S"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(DemoSettings)
    message = str(info.value)
    assert needle in message
    assert value in message
    assert "\n" not in message
