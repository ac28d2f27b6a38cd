"""Aggregate faces-seen counts to the audit log (DESIGN invariant 6): per camera and period,
numbers only, never anything of a face."""

from __future__ import annotations

import asyncio

from lfr.common.audit import FACES_SEEN, AuditSink
from lfr.common.errors import LfrError
from lfr.common.logging import get_logger
from lfr_ingest.ingest import Ingest

log = get_logger("lfr.ingest.audit")
ACTOR = "lfr-ingest"


class FacesSeenReporter:
    def __init__(self, ingest: Ingest, sink: AuditSink, *, interval_s: float) -> None:
        self.ingest = ingest
        self.sink = sink
        self.interval_s = interval_s
        #: camera -> (faces, frames processed) already reported
        self._reported: dict[str, tuple[int, int]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.report()

    async def report(self) -> int:
        """Record the counts since the last report, one record per camera that saw frames;
        counts that could not be recorded are carried into the next report. Returns records."""
        written = 0
        for camera_id, counters in sorted(self.ingest.counters().items()):
            faces, frames = counters.faces_detected, counters.frames_processed
            last_faces, last_frames = self._reported.get(camera_id, (0, 0))
            if (faces, frames) == (last_faces, last_frames):
                continue
            details = {
                "camera_id": camera_id,
                "faces_seen": str(faces - last_faces),
                "frames_processed": str(frames - last_frames),
                "period_s": f"{self.interval_s:g}",
            }
            try:
                await self.sink.record(FACES_SEEN, ACTOR, details)
            except LfrError as exc:
                log.warning("faces-seen audit failed", camera_id=camera_id, error=exc.message)
                continue
            self._reported[camera_id] = (faces, frames)
            written += 1
        return written
