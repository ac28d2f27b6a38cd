"""Settings of the alert service: environment variables prefixed ``LFR_ALERT_``."""

from __future__ import annotations

from lfr.common.settings import ServiceSettings, load_settings
from pydantic_settings import SettingsConfigDict


class AlertSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_ALERT_", extra="ignore", frozen=True)

    port: int = 50054
    redis_url: str = "redis://127.0.0.1:16379/0"


def load() -> AlertSettings:
    return load_settings(AlertSettings)
