"""Settings of the match service: environment variables prefixed ``LFR_MATCH_``."""

from __future__ import annotations

from lfr.common.settings import ServiceSettings, load_settings
from pydantic_settings import SettingsConfigDict


class MatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_MATCH_", extra="ignore", frozen=True)

    port: int = 50052
    redis_url: str = "redis://127.0.0.1:16379/0"
    watchlist_addr: str = "127.0.0.1:50053"
    alert_addr: str = "127.0.0.1:50054"


def load() -> MatchSettings:
    return load_settings(MatchSettings)
