"""The ingest core: admits frames (pushed or pulled) into per-camera pipelines and keeps their
statistics. Admission does the cheap checks in order — camera id, deployment, image header and
limits, capture-time order, sampling — so a frame that will not be processed is answered at once
and costs no Triton call.
"""

from __future__ import annotations

import asyncio
import time

from lfr.common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    LfrError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from lfr.common.logging import get_logger
from lfr.common.timeutil import is_set, to_epoch
from lfr.inference.types import FaceAnalyzer
from lfr.v1 import ingest_pb2
from lfr_ingest.frames import FrameLimits, check_camera_id, frame_image
from lfr_ingest.pipeline import CameraPipeline, FrameJob, FrameResult, PipelineDeps, item_error
from lfr_ingest.ports import DeploymentResolver, MatchClient, RgbFrame
from lfr_ingest.quality import QualityGate
from lfr_ingest.settings import IngestSettings
from lfr_ingest.stats import CameraCounters
from lfr_ingest.tracker import TrackerConfig

log = get_logger("lfr.ingest")


class Ingest:
    def __init__(
        self,
        settings: IngestSettings,
        *,
        analyzer: FaceAnalyzer,
        matcher: MatchClient,
        resolver: DeploymentResolver,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self.limits = FrameLimits(settings.max_frame_bytes, settings.max_frame_pixels)
        self.deps = PipelineDeps(
            analyzer=analyzer,
            matcher=matcher,
            gate=QualityGate.from_settings(settings),
            tracker=TrackerConfig.from_settings(settings),
            analyze_slots=asyncio.Semaphore(settings.max_concurrent_analyze),
            analyze_timeout_s=settings.analyze_timeout_s,
            queue_size=settings.queue_size,
            crop_jpeg_quality=settings.crop_jpeg_quality,
        )
        self.cameras: dict[str, CameraPipeline] = {}

    # --- cameras --------------------------------------------------------------------------------

    def camera(self, camera_id: str) -> CameraPipeline:
        """The camera's pipeline, created on first use (at most ``max_cameras``)."""
        pipeline = self.cameras.get(camera_id)
        if pipeline is None:
            if len(self.cameras) >= self.settings.max_cameras:
                raise ResourceExhausted(
                    f"ingest already serves {len(self.cameras)} cameras (max_cameras)",
                    reason="TOO_MANY_CAMERAS",
                )
            pipeline = CameraPipeline(camera_id, self.deps, target_fps=self.settings.target_fps)

            async def still_covered() -> bool:
                try:
                    return await self._active(camera_id) is None
                except LfrError:
                    return False

            pipeline.still_covered = still_covered
            self.cameras[camera_id] = pipeline
        return pipeline

    def stats(self, camera_id: str = "") -> list[ingest_pb2.CameraStats]:
        if camera_id:
            pipeline = self.cameras.get(camera_id)
            if pipeline is None:
                raise NotFound(f"no frames seen from camera {camera_id!r}", reason="UNKNOWN_CAMERA")
            return [pipeline.stats.to_proto(camera_id)]
        return [p.stats.to_proto(cid) for cid, p in sorted(self.cameras.items())]

    def counters(self) -> dict[str, CameraCounters]:
        return {cid: p.stats for cid, p in self.cameras.items()}

    # --- pushed frames --------------------------------------------------------------------------

    async def submit(self, frame: ingest_pb2.Frame) -> asyncio.Future[FrameResult]:
        """Admit one pushed frame; the future resolves to its result (at once when the frame is
        not going to be processed)."""
        received = time.perf_counter()
        reply: asyncio.Future[FrameResult] = asyncio.get_running_loop().create_future()
        job = FrameJob(frame.camera_id, frame.sequence, 0.0, received, None, reply)
        try:
            check_camera_id(frame.camera_id)
            active = await self._active(frame.camera_id)
            pipeline = self.camera(frame.camera_id)
        except LfrError as exc:
            # Nothing to attribute it to: no pipeline (and no stats) for such a camera.
            reply.set_result(_unattributed(job, exc))
            return reply
        pipeline.stats.frames_in += 1
        try:
            if pipeline.pulled:
                raise FailedPrecondition(
                    f"camera {frame.camera_id!r} is fed by a pull source; remove it first",
                    reason="CAMERA_HAS_SOURCE",
                )
            job.image = frame_image(frame, self.limits)
            job.capture_s = (
                to_epoch(frame.capture_time) if is_set(frame.capture_time) else time.time()
            )
            last = pipeline.last_capture_s
            if last is not None and job.capture_s < last:
                raise InvalidArgument(
                    f"capture_time goes back {last - job.capture_s:.3f} s from the previous frame "
                    "of this camera",
                    reason="OUT_OF_ORDER",
                )
            pipeline.last_capture_s = job.capture_s
        except LfrError as exc:
            pipeline.answer(job, ingest_pb2.FRAME_STATUS_REJECTED, exc)
            return reply
        if isinstance(active, LfrError):
            pipeline.answer(job, _status_for(active), active)
        else:
            pipeline.offer(job)
        return reply

    async def _active(self, camera_id: str) -> LfrError | None:
        """None when an active deployment covers the camera; otherwise why not. Raises only for
        a camera no deployment knows (``NotFound``)."""
        try:
            deployment = await self.resolver.resolve(camera_id)
        except NotFound:
            raise
        except LfrError as exc:
            log.warning("deployment unknown", camera_id=camera_id, error=exc.message)
            return Unavailable(
                f"cannot tell whether a deployment covers camera {camera_id!r}: {exc.message}",
                reason="DEPLOYMENT_UNKNOWN",
            )
        if deployment is None or not deployment.covers(time.time()):
            return FailedPrecondition(
                f"no active deployment covers camera {camera_id!r}", reason="NO_DEPLOYMENT"
            )
        return None

    # --- pulled frames --------------------------------------------------------------------------

    async def offer_pulled(
        self, pipeline: CameraPipeline, image: RgbFrame, capture_s: float, *, wait: bool
    ) -> None:
        """Admit a frame a pull source read (already through :meth:`wants_frame`). ``wait``:
        block for queue room instead of dropping the oldest waiting frame (files)."""
        job = FrameJob(pipeline.camera_id, 0, capture_s, time.perf_counter(), image)
        pipeline.stats.frames_in += 1
        try:
            active = await self._active(pipeline.camera_id)
        except LfrError as exc:
            active = exc
        if active is not None:
            pipeline.answer(job, _status_for(active), active)
        elif wait:
            await pipeline.offer_wait(job, sampled=True)
        else:
            pipeline.offer(job, sampled=True)

    def wants_frame(self, pipeline: CameraPipeline, capture_s: float) -> bool:
        """Whether the sampler would keep a frame at ``capture_s`` (so a source can skip decoding
        it). Counts the skip when not."""
        if pipeline.sampler.accept(capture_s):
            return True
        pipeline.stats.frames_in += 1
        pipeline.stats.frames_skipped_sampling += 1
        return False

    async def close(self) -> None:
        error = Unavailable("ingest is shutting down", reason="SHUTTING_DOWN")
        await asyncio.gather(*(p.close(error) for p in self.cameras.values()))


def _status_for(error: LfrError) -> int:
    """The status of a frame refused at admission."""
    if error.reason == "NO_DEPLOYMENT":
        return ingest_pb2.FRAME_STATUS_DROPPED_NO_DEPLOYMENT
    if isinstance(error, Unavailable | DeadlineExceeded):
        return ingest_pb2.FRAME_STATUS_FAILED  # a dependency did not answer; may pass later
    return ingest_pb2.FRAME_STATUS_REJECTED


def _unattributed(job: FrameJob, error: LfrError) -> FrameResult:
    result = FrameResult(
        camera_id=job.camera_id,
        sequence=job.sequence,
        status=_status_for(error),  # type: ignore[arg-type]
        latency_ms=(time.perf_counter() - job.received) * 1000,
    )
    result.error.CopyFrom(item_error(error))
    return result
