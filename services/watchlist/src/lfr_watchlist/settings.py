"""Settings of the watchlist service: environment variables prefixed ``LFR_WATCHLIST_``."""

from __future__ import annotations

from lfr.common.settings import ServiceSettings, load_settings
from pydantic_settings import SettingsConfigDict


class WatchlistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_WATCHLIST_", extra="ignore", frozen=True)

    port: int = 50053
    redis_url: str = "redis://127.0.0.1:16379/0"
    triton_url: str = "127.0.0.1:18001"
    alert_addr: str = "127.0.0.1:50054"


def load() -> WatchlistSettings:
    return load_settings(WatchlistSettings)
