"""What the driver saw during a run: frames sent and their results, alerts received, the
service counters. Plain data (JSON in and out); :mod:`lfr_cli.synth.report` turns it into
figures against the ground truth. Holds no face data — boxes, scores and counts only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lfr_cli.synth.photos import Box

__all__ = ["AlertLog", "FrameLog", "Mode", "RunRecord"]

Mode = Literal["push", "pull"]

#: Counters of ingest's CameraStats that the report uses, as deltas over the run.
STAT_FIELDS = (
    "frames_in",
    "frames_processed",
    "frames_skipped_sampling",
    "frames_dropped_backpressure",
    "frames_dropped_no_deployment",
    "frames_rejected",
    "frames_failed",
    "faces_detected",
    "faces_rejected_quality",
    "tracks",
    "probes",
    "matches",
    "probes_failed",
)


@dataclass
class FrameLog:
    """One frame sent (push) and, once it came back, its result."""

    camera_id: str
    frame: int
    sequence: int
    capture_ns: int
    status: str = ""  #: FrameStatus name without prefix, e.g. "PROCESSED"; "" = no result
    faces_found: int = 0
    probes_sent: int = 0
    matches: int = 0
    latency_ms: float = 0.0
    error_reason: str = ""
    result_ns: int = 0


@dataclass
class AlertLog:
    alert_id: str
    camera_id: str
    entry_id: str
    subject_ref: str
    identity: str  #: the enrolled identity the entry stands for ("" if unknown)
    score: float
    capture_ns: int
    received_ns: int
    box: Box
    track_id: int = 0
    repeat_count: int = 0
    decision: str = ""  #: what the harness's simulated operator decided, if it did

    @property
    def latency_ms(self) -> float:
        return (self.received_ns - self.capture_ns) / 1e6


@dataclass
class RunRecord:
    mode: Mode
    fps: float
    camera_ids: list[str]
    watchlist_id: str = ""
    deployment_id: str = ""
    threshold: float = 0.0  #: the deployment's threshold (alerts come only at or above it)
    enrolled: dict[str, str] = field(default_factory=dict)  #: identity → entry id
    enrol_failures: dict[str, str] = field(default_factory=dict)  #: identity → reason
    started_ns: int = 0  #: first frame sent (push) / first source added (pull)
    ended_ns: int = 0  #: last frame result (push) / last source finished (pull)
    frames: list[FrameLog] = field(default_factory=list)
    alerts: list[AlertLog] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  #: camera → counter deltas
    ingest_latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  #: pull: final states
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.ended_ns - self.started_ns) / 1e9)

    def frame_index(self) -> dict[tuple[str, int], int]:
        """(camera, capture ns) → frame index, for the frames this run sent."""
        return {(f.camera_id, f.capture_ns): f.frame for f in self.frames}

    def identity_of_entry(self) -> dict[str, str]:
        return {entry: identity for identity, entry in self.enrolled.items()}

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        values = dict(data)
        values["frames"] = [FrameLog(**f) for f in data.get("frames", [])]
        values["alerts"] = [
            AlertLog(**{**a, "box": tuple(a["box"])}) for a in data.get("alerts", [])
        ]
        return cls(**values)
