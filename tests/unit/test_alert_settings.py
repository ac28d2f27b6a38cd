"""Alert settings: retention bounds (DESIGN invariant 3) and fail-fast validation."""

from __future__ import annotations

import pytest

from lfr.common.errors import ConfigError
from lfr_alert.settings import AlertSettings, load


def test_defaults_keep_alerts_a_day() -> None:
    settings = AlertSettings()
    assert settings.retention_s == 24 * 3600
    assert settings.cooldown_s > 0 and settings.routes_file is None


def test_retention_of_31_days_is_allowed_and_more_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LFR_ALERT_RETENTION_S", str(31 * 24 * 3600))
    assert load().retention_s == 31 * 24 * 3600
    monkeypatch.setenv("LFR_ALERT_RETENTION_S", str(31 * 24 * 3600 + 1))
    with pytest.raises(ConfigError, match="LFR_ALERT_RETENTION_S"):
        load()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LFR_ALERT_RETENTION_S", "0"),
        ("LFR_ALERT_COOLDOWN_S", "-1"),
        ("LFR_ALERT_SUBSCRIBER_QUEUE_SIZE", "0"),
        ("LFR_ALERT_REDIS_URL", "http://localhost:6379"),
        ("LFR_ALERT_MAX_CROP_BYTES", str(64 * 1024 * 1024)),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load()
    assert "invalid settings" in str(info.value)
