"""Settings of the watchlist service: environment variables prefixed ``LFR_WATCHLIST_``."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lfr.common.scores import DEFAULT_THRESHOLD, THRESHOLD_FLOOR
from lfr.common.settings import ServiceSettings, load_settings


class WatchlistSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_WATCHLIST_", extra="ignore", frozen=True)

    port: int = Field(default=50053, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:16379/0"
    #: Per-command Redis deadline (socket timeout), seconds.
    redis_timeout_s: float = Field(default=5.0, gt=0)
    triton_url: str = "127.0.0.1:18001"
    #: Deadline of one Triton round trip (one enrolment image), seconds.
    triton_timeout_s: float = Field(default=10.0, gt=0)
    #: The alert service, which owns the audit log.
    alert_addr: str = "127.0.0.1:50054"

    # Enrolment.
    #: Shorter side of the face box, in pixels, below which an enrolment image is refused.
    min_face_px: int = Field(default=80, ge=20)
    max_images_per_enrol: int = Field(default=10, ge=1, le=100)
    #: Longest an entry may live: ``expires_at`` must be at most this far in the future.
    max_entry_ttl_days: float = Field(default=365.0, gt=0)

    # Expiry.
    #: How often the background purge removes expired entries, seconds.
    purge_interval_s: float = Field(default=60.0, gt=0)

    # Deployments (the score scale and its defaults: lfr.common.scores).
    default_threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0, le=1)
    threshold_floor: float = Field(default=THRESHOLD_FLOOR, gt=0, le=1)
    #: Longest authorised window (end - start) of a deployment, hours.
    max_deployment_hours: float = Field(default=24.0, gt=0)
    #: How often deployments past their end are ended in the background, seconds (reads end
    #: them lazily too).
    deployment_check_interval_s: float = Field(default=1.0, gt=0)

    # Audit: events are written to Redis with the change they describe, then forwarded.
    #: Pause between forwarding attempts while the alert service does not answer, seconds.
    audit_retry_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        if self.default_threshold < self.threshold_floor:
            raise ValueError(
                f"default_threshold {self.default_threshold} is below threshold_floor "
                f"{self.threshold_floor}"
            )
        return self


def load() -> WatchlistSettings:
    return load_settings(WatchlistSettings)
