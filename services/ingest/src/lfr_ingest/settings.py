"""Settings of the ingest service: environment variables prefixed ``LFR_INGEST_``."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from lfr.common.settings import MiB, ServiceSettings, load_settings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LFR_INGEST_", extra="ignore", frozen=True)

    port: int = Field(default=50051, ge=0, le=65535)
    triton_url: str = "127.0.0.1:18001"
    match_addr: str = "127.0.0.1:50052"
    watchlist_addr: str = "127.0.0.1:50053"
    #: Alert service, for the audit log's aggregate faces-seen counts; empty = no audit records.
    alert_addr: str = "127.0.0.1:50054"
    # A raw 4K RGB frame is ~24 MiB; the gRPC limit must stay above the per-frame limit.
    max_receive_message_bytes: int = Field(default=32 * MiB, gt=0)

    # --- frames ---------------------------------------------------------------------------------
    #: Largest frame accepted, encoded or raw bytes; larger ones are REJECTED (IMAGE_TOO_LARGE).
    max_frame_bytes: int = Field(default=25 * MiB, gt=0)
    #: Largest frame accepted in pixels (width * height); 4K UHD by default.
    max_frame_pixels: int = Field(default=3840 * 2160, gt=0)
    #: Default sampling rate per camera (frames/s); 0 processes every frame that arrives.
    target_fps: float = Field(default=5.0, ge=0, le=240)
    #: Frames waiting per camera; when full the oldest waiting frame is dropped (newest wins).
    queue_size: int = Field(default=2, ge=1, le=1000)
    #: Results a push stream may owe before it stops reading (flow control to the sender).
    max_pending_results: int = Field(default=64, ge=1, le=100_000)
    #: Frames in Triton at once across all cameras (face_analyze runs 4 instances).
    max_concurrent_analyze: int = Field(default=4, ge=1, le=256)
    #: Cameras the service keeps pipelines and stats for; more are REJECTED (TOO_MANY_CAMERAS).
    max_cameras: int = Field(default=256, ge=1)

    # --- quality gate ---------------------------------------------------------------------------
    min_face_px: float = Field(default=40.0, ge=0, description="shorter side of the face box")
    min_blur: float = Field(default=20.0, ge=0, description="variance of Laplacian of the chip")
    max_yaw_degrees: float = Field(default=40.0, gt=0, le=90)
    min_detector_score: float = Field(default=0.3, description="HOG margin / CNN confidence")

    # --- tracker --------------------------------------------------------------------------------
    #: Overlap that continues a track on its own.
    track_iou: float = Field(default=0.3, gt=0, le=1)
    #: Without enough overlap: the largest centroid move, in face widths, that can continue a
    #: track when the embeddings also agree.
    track_max_displacement: float = Field(default=1.5, ge=0)
    #: Cosine similarity the embeddings need for a move without overlap (0 = position only).
    track_min_similarity: float = Field(default=0.8, ge=0, le=1)
    #: A track not seen for this long (capture time, or wall time when the camera goes quiet)
    #: ends; its unsent best shot is probed then.
    track_ttl_s: float = Field(default=1.0, gt=0)
    #: A track's first probe waits this long (capture time) collecting its best shot.
    best_shot_window_s: float = Field(default=0.4, ge=0)
    #: A track still in view is probed again after this long with its best shot since the last
    #: probe; 0 = never (until it matches, after which it is never re-probed).
    reprobe_interval_s: float = Field(default=10.0, ge=0)
    max_tracks_per_camera: int = Field(default=64, ge=1)
    crop_jpeg_quality: int = Field(default=90, ge=10, le=100)

    # --- dependencies ---------------------------------------------------------------------------
    analyze_timeout_s: float = Field(default=10.0, gt=0)
    match_timeout_s: float = Field(default=5.0, gt=0)
    resolve_timeout_s: float = Field(default=2.0, gt=0)
    #: How long a ResolveCamera answer is reused (a deployment's end time still applies).
    deployment_cache_s: float = Field(default=2.0, ge=0)
    #: The MatchStream is reopened after this long (its deadline).
    match_stream_max_age_s: float = Field(default=600.0, gt=10)

    # --- pull sources ---------------------------------------------------------------------------
    max_sources: int = Field(default=32, ge=0)
    #: When set, file sources must lie under one of these directories (env: a JSON list).
    file_source_roots: tuple[str, ...] = ()
    source_open_timeout_s: float = Field(default=10.0, gt=0)
    source_read_timeout_s: float = Field(default=5.0, gt=0)
    reconnect_initial_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    #: Failed reconnect attempts in a row before a live source is FAILED; 0 = never give up.
    reconnect_max_attempts: int = Field(default=0, ge=0)

    # --- audit ----------------------------------------------------------------------------------
    #: How often aggregate faces-seen counts (numbers only) go to the audit log; 0 = never.
    audit_interval_s: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_frame_bytes + 64 * 1024 > self.max_receive_message_bytes:
            raise ValueError(
                "max_frame_bytes must stay below max_receive_message_bytes (minus 64 KiB for the "
                "rest of the message), or a large frame would end the whole stream"
            )
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self


def load() -> IngestSettings:
    return load_settings(IngestSettings)
