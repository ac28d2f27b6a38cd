"""Settings of the match service: environment variables prefixed ``LFR_MATCH_``."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lfr.common.scores import THRESHOLD_FLOOR
from lfr.common.settings import MiB, ServiceSettings, load_settings


class MatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_MATCH_", extra="ignore", frozen=True)

    port: int = Field(default=50052, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:16379/0"
    watchlist_addr: str = "127.0.0.1:50053"
    alert_addr: str = "127.0.0.1:50054"

    #: Prometheus text endpoint (``/metrics``); 0 = off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    #: Nearest neighbours asked of the index when a request leaves ``top_k`` at 0. Several
    #: enrolment vectors of one entry count once, so k > 1 still finds the best distinct entry.
    default_top_k: int = Field(default=5, ge=1, le=1000)
    max_top_k: int = Field(default=100, ge=1, le=1000)
    #: How far an embedding's L2 norm may be from 1 before the probe is refused.
    norm_tolerance: float = Field(default=0.01, gt=0, lt=1)
    #: Defence in depth: a deployment threshold below this floor is refused, whatever the
    #: watchlist service says (a low threshold matches strangers). Keep it at or below the
    #: watchlist service's own floor.
    min_threshold: float = Field(default=THRESHOLD_FLOOR, ge=-1, le=1)
    max_crop_bytes: int = Field(default=2 * MiB, gt=0)

    #: HNSW search breadth (RediSearch's default, 10, misses enrolled subjects at 100k entries;
    #: see docs/PERFORMANCE.md). Ignored for FLAT indexes.
    hnsw_ef_runtime: int = Field(default=200, ge=1, le=10_000)
    #: Redis: per-command socket timeout and the RediSearch query timeout.
    redis_timeout_s: float = Field(default=2.0, gt=0)
    #: Connections for KNN queries; more concurrent probes wait for one.
    redis_max_connections: int = Field(default=64, ge=1, le=10_000)
    knn_timeout_ms: int = Field(default=1000, ge=1)
    #: Privacy guard: set ``slowlog-log-slower-than -1`` (and hide user data from Redis' own
    #: logs) when Redis has them otherwise; when false the service only checks and refuses to
    #: serve until an operator fixes the Redis configuration.
    redis_enforce_privacy_config: bool = True
    #: Refuse to serve while a client watches Redis with MONITOR (it would see every probe).
    refuse_when_monitored: bool = True

    #: How long a camera's resolved deployment (or its absence) is reused, seconds; 0 = never.
    #: A deployment's own end time is honoured on every probe, cached or not.
    resolve_cache_ttl_s: float = Field(default=1.0, ge=0, le=60)
    resolve_timeout_s: float = Field(default=2.0, gt=0)
    resolve_cache_max_cameras: int = Field(default=10_000, gt=0)

    #: Publishing a match: per-attempt timeout, backoff between attempts, and the overall budget
    #: (also bounded by the caller's own deadline).
    publish_attempt_timeout_s: float = Field(default=2.0, gt=0)
    publish_deadline_s: float = Field(default=5.0, gt=0)
    publish_backoff_initial_s: float = Field(default=0.05, gt=0)
    publish_backoff_max_s: float = Field(default=1.0, gt=0)
    #: gRPC reconnect backoff cap towards watchlist/alert, so a peer that comes back is used
    #: within about this long (gRPC's own default grows to 120 s).
    peer_reconnect_max_s: float = Field(default=2.0, gt=0)

    #: Probes of one MatchStream decided concurrently (answers keep the request order).
    stream_concurrency: int = Field(default=8, ge=1, le=256)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.default_top_k > self.max_top_k:
            raise ValueError(
                f"default_top_k ({self.default_top_k}) exceeds max_top_k ({self.max_top_k})"
            )
        if self.publish_backoff_initial_s > self.publish_backoff_max_s:
            raise ValueError("publish_backoff_initial_s exceeds publish_backoff_max_s")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must be a redis://, rediss:// or unix:// URL")
        if self.metrics_port and self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from the gRPC port")
        return self


def load() -> MatchSettings:
    return load_settings(MatchSettings)
