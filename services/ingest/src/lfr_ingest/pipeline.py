"""The per-camera pipeline: sample, queue (newest wins), analyze (one Triton round trip per
frame), quality gate, track, probe the best shot, wait for match's decision, forget.

One worker per camera keeps the frames of a camera in order (the tracker needs that); cameras run
concurrently, sharing ``analyze_slots`` (frames in Triton at once).

Forgetting (DESIGN §1): a frame's pixels are dropped as soon as Triton has answered; a face's
embedding and chip live only in its track's candidate shot, and the shot (with its JPEG crop) is
dropped as soon as match has decided on it, or when its track ends. Nothing here writes a file
or logs anything derived from a face.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import numpy.typing as npt

from lfr.common.errors import InvalidArgument, LfrError
from lfr.common.logging import get_logger
from lfr.common.timeutil import to_timestamp
from lfr.inference.types import MODEL_VERSION, FaceAnalyzer
from lfr.v1 import common_pb2, ingest_pb2, match_pb2
from lfr_ingest.latest_queue import LatestWinsQueue
from lfr_ingest.ports import MatchClient, RgbFrame
from lfr_ingest.quality import QualityGate
from lfr_ingest.sampler import Sampler
from lfr_ingest.stats import CameraCounters
from lfr_ingest.tracker import Shot, Track, Tracker, TrackerConfig

log = get_logger("lfr.ingest.pipeline")

FrameResult = ingest_pb2.FrameResult


@dataclass(eq=False, slots=True)
class FrameJob:
    """One frame on its way through a camera's pipeline."""

    camera_id: str
    sequence: int
    capture_s: float
    #: ``time.perf_counter()`` at receipt; latency is measured from here.
    received: float
    image: bytes | RgbFrame | None = field(repr=False)
    #: Where the result goes (push streams); None for pulled frames (stats only).
    reply: asyncio.Future[FrameResult] | None = None

    def __repr__(self) -> str:
        return f"FrameJob(camera_id={self.camera_id!r}, sequence={self.sequence})"


def item_error(exc: LfrError) -> common_pb2.ItemError:
    return common_pb2.ItemError(code=exc.code.value[0], reason=exc.reason, message=exc.message)


@dataclass(frozen=True)
class PipelineDeps:
    analyzer: FaceAnalyzer
    matcher: MatchClient
    gate: QualityGate
    tracker: TrackerConfig
    #: Frames in Triton at once, across all cameras.
    analyze_slots: asyncio.Semaphore
    analyze_timeout_s: float = 10.0
    queue_size: int = 2
    crop_jpeg_quality: int = 90


def encode_crop(chip: npt.NDArray[np.uint8], quality: int) -> bytes:
    """JPEG of an RGB face chip, in memory (for the probe only)."""
    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(chip[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise InvalidArgument("face chip could not be encoded", reason="BAD_CHIP")
    return bytes(buf)


@dataclass(slots=True)
class _ProbeOutcome:
    track: Track
    decided: bool = False
    matched: bool = False
    alert_id: str = ""
    error: LfrError | None = None


class CameraPipeline:
    def __init__(self, camera_id: str, deps: PipelineDeps, *, target_fps: float) -> None:
        self.camera_id = camera_id
        self.deps = deps
        self.stats = CameraCounters()
        self.sampler = Sampler(target_fps)
        self.queue: LatestWinsQueue[FrameJob] = LatestWinsQueue(deps.queue_size)
        self.tracker = Tracker(deps.tracker)
        #: Capture time of the newest frame accepted (push streams must not go back in time).
        self.last_capture_s: float | None = None
        #: Set while a pull source feeds this camera (pushed frames are then refused).
        self.pulled = False
        self._worker: asyncio.Task[None] | None = None
        self._busy: FrameJob | None = None
        #: Whether a deployment still covers the camera; asked before probing the shots of
        #: tracks that ended while the camera was quiet (no frame checked it then).
        self.still_covered: Callable[[], Awaitable[bool]] | None = None

    # --- admission ------------------------------------------------------------------------------

    def finish(self, job: FrameJob, result: FrameResult) -> None:
        """Count the frame's outcome and hand its result to whoever waits for it."""
        job.image = None
        self.stats.count_status(result.status)
        if result.status == ingest_pb2.FRAME_STATUS_PROCESSED:
            self.stats.latency.add(result.latency_ms)
        if job.reply is not None and not job.reply.done():
            job.reply.set_result(result)

    def answer(self, job: FrameJob, status: int, error: LfrError | None = None) -> None:
        """Answer a frame that is not processed (skipped, dropped, refused)."""
        result = FrameResult(
            camera_id=job.camera_id,
            sequence=job.sequence,
            status=status,  # type: ignore[arg-type]
            latency_ms=(time.perf_counter() - job.received) * 1000,
        )
        if error is not None:
            result.error.CopyFrom(item_error(error))
        self.finish(job, result)

    def _admit(self, job: FrameJob, sampled: bool) -> bool:
        if not sampled and not self.sampler.accept(job.capture_s):
            self.answer(job, ingest_pb2.FRAME_STATUS_SKIPPED_SAMPLING)
            return False
        self._ensure_worker()
        return True

    def offer(self, job: FrameJob, *, sampled: bool = False) -> None:
        """Queue a live frame; when the queue is full the oldest waiting frame is dropped.
        ``sampled``: the caller already asked the sampler."""
        if self._admit(job, sampled):
            dropped = self.queue.put_latest(job)
            if dropped is not None:
                self.answer(dropped, ingest_pb2.FRAME_STATUS_DROPPED_BACKPRESSURE)

    async def offer_wait(self, job: FrameJob, *, sampled: bool = False) -> None:
        """Queue a frame, waiting for room (files: waiting loses nothing)."""
        if self._admit(job, sampled):
            await self.queue.put_wait(job)

    # --- worker ---------------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"ingest-camera-{self.camera_id}")

    async def _run(self) -> None:
        while True:
            if self.tracker.tracks:
                try:
                    job = await asyncio.wait_for(self.queue.get(), self.deps.tracker.ttl_s)
                except TimeoutError:
                    # The camera went quiet: its tracks have ended; probe what was never sent.
                    await self._end_tracks(self.tracker.close_all(), time.time())
                    continue
            else:
                job = await self.queue.get()
            self._busy = job
            try:
                result = await self.process(job)
            except Exception as exc:  # one bad frame must not stop the camera
                log.error("frame failed", camera_id=self.camera_id, error_type=type(exc).__name__)
                result = FrameResult(
                    camera_id=job.camera_id,
                    sequence=job.sequence,
                    status=ingest_pb2.FRAME_STATUS_FAILED,
                    error=common_pb2.ItemError(
                        code=13, reason="INTERNAL", message="internal error; see the service log"
                    ),
                )
            finally:
                self._busy = None
            self.finish(job, result)

    async def process(self, job: FrameJob) -> FrameResult:
        deps = self.deps
        result = FrameResult(camera_id=job.camera_id, sequence=job.sequence)
        image, job.image = job.image, None
        if image is None:
            raise RuntimeError("frame processed twice")
        try:
            async with deps.analyze_slots:
                faces = await deps.analyzer.analyze(image, timeout_s=deps.analyze_timeout_s)
        except InvalidArgument as exc:
            result.status = ingest_pb2.FRAME_STATUS_REJECTED
            result.error.CopyFrom(item_error(exc))
            return result
        except LfrError as exc:
            result.status = ingest_pb2.FRAME_STATUS_FAILED
            result.error.CopyFrom(item_error(exc))
            return result
        finally:
            del image  # the frame's pixels are not needed any more

        now_s = job.capture_s
        qualified = [deps.gate.passes(face.quality) for face in faces]
        self.stats.faces_detected += len(faces)
        self.stats.faces_rejected_quality += qualified.count(False)
        ended = self.tracker.expire(now_s)
        tracks, evicted = self.tracker.update(faces, qualified, now_s)
        self.stats.tracks = self.tracker.started
        boxes = [face.box for face in faces]
        del faces  # embeddings and chips now live only in the tracks' candidate shots

        # Tracks in view whose shot is due, and tracks that ended without ever being probed.
        due = self.tracker.due(now_s) + _never_probed([*ended, *evicted])
        outcomes = await self._probe_all(due, now_s)

        probed_ids = {o.track.track_id for o in outcomes if o.decided}
        for track, box, ok in zip(tracks, boxes, qualified, strict=True):
            result.faces.add(
                track_id=track.track_id,
                box=common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
                passed_quality=ok,
                probed=track.track_id in probed_ids,
                matched=track.matched,
            )
        result.faces_found = len(boxes)
        result.probes_sent = sum(1 for o in outcomes if o.decided)
        result.matches = sum(1 for o in outcomes if o.matched)
        result.alert_ids.extend(o.alert_id for o in outcomes if o.alert_id)
        failed = next((o.error for o in outcomes if o.error is not None), None)
        if failed is not None:
            result.status = ingest_pb2.FRAME_STATUS_FAILED
            result.error.CopyFrom(item_error(failed))
        else:
            result.status = ingest_pb2.FRAME_STATUS_PROCESSED
        result.latency_ms = (time.perf_counter() - job.received) * 1000
        return result

    async def _end_tracks(self, ended: Iterable[Track], now_s: float) -> None:
        unsent = _never_probed(ended)
        if not unsent:
            return
        if self.still_covered is not None and not await self.still_covered():
            for track in unsent:  # the deployment ended meanwhile: drop, never probe
                Tracker.take_shot(track)
            return
        await self._probe_all(unsent, now_s)

    async def _probe_all(self, tracks: Sequence[Track], now_s: float) -> list[_ProbeOutcome]:
        if not tracks:
            return []
        return list(await asyncio.gather(*(self._probe(track, now_s) for track in tracks)))

    async def _probe(self, track: Track, now_s: float) -> _ProbeOutcome:
        outcome = _ProbeOutcome(track)
        shot = Tracker.take_shot(track)
        if shot is None:
            return outcome
        try:
            request = self._request(track, shot)
            response = await self.deps.matcher.match(request)
        except LfrError as exc:
            # No decision: keep the shot for the next frame (a retry uses a new request id, as
            # the probe it carries may be a better shot by then).
            self.stats.probes_failed += 1
            Tracker.retry_later(track, shot)
            outcome.error = exc
            return outcome
        finally:
            del shot  # the decision is back (or not coming): drop embedding, chip and crop
        if response.outcome == match_pb2.MATCH_OUTCOME_REFUSED:
            self.stats.probes_failed += 1
            log.info(
                "probe refused",
                camera_id=self.camera_id,
                track_id=track.track_id,
                reason=response.error.reason,
            )
            Tracker.probed(track, now_s, matched=False)
            return outcome
        matched = response.outcome == match_pb2.MATCH_OUTCOME_MATCHED
        Tracker.probed(track, now_s, matched=matched)
        self.stats.probes += 1
        self.stats.matches += int(matched)
        outcome.decided = True
        outcome.matched = matched
        outcome.alert_id = response.alert_id if matched else ""
        return outcome

    def _request(self, track: Track, shot: Shot) -> match_pb2.MatchRequest:
        q = shot.quality
        box = shot.box
        return match_pb2.MatchRequest(
            request_id=uuid.uuid4().hex,
            camera_id=self.camera_id,
            capture_time=to_timestamp(shot.capture_s),
            embedding=shot.embedding.tolist(),
            box=common_pb2.BoundingBox(x1=box[0], y1=box[1], x2=box[2], y2=box[3]),
            quality=common_pb2.FaceQuality(
                size_px=q.size_px, blur=q.blur, yaw_degrees=q.yaw, detector_score=q.detector_score
            ),
            crop_jpeg=encode_crop(shot.chip, self.deps.crop_jpeg_quality),
            model_version=MODEL_VERSION,
            track_id=track.track_id,
        )

    # --- shutdown -------------------------------------------------------------------------------

    async def close(self, error: LfrError) -> None:
        """Stop the worker; frames still waiting are answered with ``error`` (FAILED)."""
        busy = self._busy
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        for job in [*([busy] if busy else []), *self.queue.drain()]:
            self.answer(job, ingest_pb2.FRAME_STATUS_FAILED, error)
        self.tracker.close_all()  # shots are dropped unsent: nothing of them is kept


def _never_probed(tracks: Iterable[Track]) -> list[Track]:
    return [t for t in tracks if t.probes == 0 and t.best is not None and not t.matched]
