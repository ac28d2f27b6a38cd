"""Settings of the ingest service: environment variables prefixed ``LFR_INGEST_``."""

from __future__ import annotations

from lfr.common.settings import ServiceSettings, load_settings
from pydantic_settings import SettingsConfigDict


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_INGEST_", extra="ignore", frozen=True)

    port: int = 50051
    triton_url: str = "127.0.0.1:18001"
    match_addr: str = "127.0.0.1:50052"
    watchlist_addr: str = "127.0.0.1:50053"


def load() -> IngestSettings:
    return load_settings(IngestSettings)
