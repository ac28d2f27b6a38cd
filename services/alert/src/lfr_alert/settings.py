"""Settings of the alert service: environment variables prefixed ``LFR_ALERT_``."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lfr.common.settings import MiB, ServiceSettings, load_settings

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
#: DESIGN invariant 3: alerts are kept 24 h by default, and never longer than 31 days.
DEFAULT_RETENTION_S = DAY_S
MAX_RETENTION_S = 31 * DAY_S


class AlertSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_ALERT_", extra="ignore", frozen=True)

    port: int = Field(default=50054, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:16379/0"
    #: Per-command Redis deadline (socket timeout), seconds.
    redis_timeout_s: float = Field(default=5.0, gt=0)

    #: Routing rules (JSON); unset = the built-in rules (``lfr_alert/default_routes.json``).
    routes_file: Path | None = None

    #: A repeat match of the same subject on the same camera within this many seconds of the
    #: first alert joins it instead of raising a new one; 0 turns de-duplication off.
    cooldown_s: float = Field(default=60.0, ge=0, le=DAY_S)

    #: How long an alert (and its crop) is kept unless under legal hold, seconds.
    retention_s: float = Field(default=DEFAULT_RETENTION_S, gt=0, le=MAX_RETENTION_S)
    #: How often the retention job looks for expired alerts, seconds.
    retention_sweep_interval_s: float = Field(default=30.0, gt=0, le=HOUR_S)
    #: After deleting alerts, have Redis rewrite its append-only file (at most this often,
    #: seconds) so deleted crops leave the disk as well; unset = never (the operator does it).
    compact_interval_s: float | None = Field(default=300.0, ge=0)

    #: Alerts buffered per subscriber; a subscriber further behind is cut off with
    #: RESOURCE_EXHAUSTED and resumes from its cursor.
    subscriber_queue_size: int = Field(default=1000, ge=1, le=1_000_000)
    max_subscribers: int = Field(default=1000, ge=1)
    #: How long Subscribe waits for the alert stream to be readable before UNAVAILABLE.
    subscribe_ready_timeout_s: float = Field(default=5.0, gt=0)

    max_crop_bytes: int = Field(default=2 * MiB, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        if self.max_crop_bytes >= self.max_receive_message_bytes:
            raise ValueError("max_crop_bytes must be below max_receive_message_bytes")
        return self


def load() -> AlertSettings:
    return load_settings(AlertSettings)
