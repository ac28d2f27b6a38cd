"""Per-camera counters and latency percentiles for GetStats (numbers only, never face data)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields

import numpy as np

from lfr.v1 import common_pb2, ingest_pb2


class LatencyWindow:
    """The latest ``size`` latencies (ms); percentiles over them, the count over all time."""

    def __init__(self, size: int = 2048) -> None:
        self._window: deque[float] = deque(maxlen=size)
        self.count = 0
        self.max_ms = 0.0

    def add(self, latency_ms: float) -> None:
        self._window.append(latency_ms)
        self.count += 1
        self.max_ms = max(self.max_ms, latency_ms)

    def summary(self) -> common_pb2.LatencySummary:
        if not self._window:
            return common_pb2.LatencySummary(count=self.count)
        p50, p95, p99 = np.percentile(np.fromiter(self._window, dtype=np.float64), [50, 95, 99])
        return common_pb2.LatencySummary(
            count=self.count, p50_ms=p50, p95_ms=p95, p99_ms=p99, max_ms=self.max_ms
        )


@dataclass
class CameraCounters:
    frames_in: int = 0
    frames_processed: int = 0
    frames_skipped_sampling: int = 0
    frames_dropped_backpressure: int = 0
    frames_dropped_no_deployment: int = 0
    frames_rejected: int = 0
    frames_failed: int = 0
    faces_detected: int = 0
    faces_rejected_quality: int = 0
    tracks: int = 0
    probes: int = 0
    probes_failed: int = 0
    matches: int = 0
    latency: LatencyWindow = field(default_factory=LatencyWindow)

    def count_status(self, status: int) -> None:
        if status == ingest_pb2.FRAME_STATUS_PROCESSED:
            self.frames_processed += 1
        elif status == ingest_pb2.FRAME_STATUS_SKIPPED_SAMPLING:
            self.frames_skipped_sampling += 1
        elif status == ingest_pb2.FRAME_STATUS_DROPPED_BACKPRESSURE:
            self.frames_dropped_backpressure += 1
        elif status == ingest_pb2.FRAME_STATUS_DROPPED_NO_DEPLOYMENT:
            self.frames_dropped_no_deployment += 1
        elif status == ingest_pb2.FRAME_STATUS_REJECTED:
            self.frames_rejected += 1
        elif status == ingest_pb2.FRAME_STATUS_FAILED:
            self.frames_failed += 1

    def to_proto(self, camera_id: str) -> ingest_pb2.CameraStats:
        numbers = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "latency"}
        return ingest_pb2.CameraStats(
            camera_id=camera_id, latency=self.latency.summary(), **numbers
        )
