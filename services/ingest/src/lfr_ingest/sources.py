"""Pull sources: ingest reads a video file or a live stream (RTSP/HTTP) itself.

Each source runs a small state machine: CONNECTING -> RUNNING, and when a live stream breaks,
RECONNECTING with exponential backoff (``reconnect_initial_s`` doubling up to
``reconnect_max_s``) until it runs again, or FAILED after ``reconnect_max_attempts`` failures in a
row (0 = keep trying). A file ends FINISHED (or starts over with ``loop``); a file that cannot be
opened is FAILED at once. RemoveSource stops it (STOPPED).

Live streams are read continuously and the newest frame wins (a camera does not wait); files are
read only as fast as the pipeline takes frames (waiting loses nothing), and their capture time is
their position in the video, so a file is sampled and tracked in video time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from lfr.common.errors import (
    AlreadyExists,
    InvalidArgument,
    LfrError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from lfr.common.logging import get_logger
from lfr.common.timeutil import to_timestamp
from lfr.v1 import ingest_pb2
from lfr_ingest.frames import check_camera_id
from lfr_ingest.ingest import Ingest
from lfr_ingest.pipeline import CameraPipeline
from lfr_ingest.ports import VideoOpener, VideoStream
from lfr_ingest.sampler import Sampler
from lfr_ingest.settings import IngestSettings

log = get_logger("lfr.ingest.sources")

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "http", "https"})
_ENDED = frozenset(
    {
        ingest_pb2.SOURCE_STATE_FINISHED,
        ingest_pb2.SOURCE_STATE_FAILED,
        ingest_pb2.SOURCE_STATE_STOPPED,
    }
)


def redact_uri(uri: str) -> str:
    """The URI without its password (safe to log and to return)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class SourceSpec:
    camera_id: str
    uri: str
    #: What OpenCV opens: the URI, or a file's path.
    target: str
    target_fps: float
    loop: bool
    live: bool


class SourceRunner:
    def __init__(
        self,
        spec: SourceSpec,
        *,
        ingest: Ingest,
        pipeline: CameraPipeline,
        opener: VideoOpener,
        settings: IngestSettings,
    ) -> None:
        self.spec = spec
        self.ingest = ingest
        self.pipeline = pipeline
        self.opener = opener
        self.settings = settings
        self.state: int = ingest_pb2.SOURCE_STATE_CONNECTING
        self.state_since = time.time()
        self.last_error = ""
        self.frames_read = 0
        self.reconnects = 0
        # One thread per source: OpenCV calls block, and a capture is best used from one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-source")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"ingest-source-{self.spec.camera_id}")

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    def to_proto(self) -> ingest_pb2.Source:
        return ingest_pb2.Source(
            camera_id=self.spec.camera_id,
            uri=redact_uri(self.spec.uri),
            target_fps=self.spec.target_fps,
            loop=self.spec.loop,
            state=self.state,  # type: ignore[arg-type]
            last_error=self.last_error,
            frames_read=self.frames_read,
            reconnects=self.reconnects,
            state_since=to_timestamp(self.state_since),
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.ended:
            self._set(ingest_pb2.SOURCE_STATE_STOPPED)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _set(self, state: int, error: str | None = None) -> None:
        if state != self.state:
            self.state = state
            self.state_since = time.time()
            log.info(
                "source state",
                camera_id=self.spec.camera_id,
                state=ingest_pb2.SourceState.Name(state),  # type: ignore[arg-type]
                error=error or "",
            )
        if error is not None:
            self.last_error = error

    async def _blocking(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run(self) -> None:
        settings = self.settings
        backoff = settings.reconnect_initial_s
        failures = 0
        connected_before = False
        offset_s = 0.0  # a looping file's video time carries on across loops
        started = time.time()
        while True:
            try:
                stream: VideoStream = await self._blocking(
                    lambda: self.opener.open(
                        self.spec.target,
                        open_timeout_s=settings.source_open_timeout_s,
                        read_timeout_s=settings.source_read_timeout_s,
                    )
                )
            except LfrError as exc:
                if not self.spec.live:
                    self._set(ingest_pb2.SOURCE_STATE_FAILED, f"cannot open the file: {exc}")
                    return
                failures += 1
                if settings.reconnect_max_attempts and failures >= settings.reconnect_max_attempts:
                    self._set(
                        ingest_pb2.SOURCE_STATE_FAILED,
                        f"gave up after {failures} failed attempts: {exc}",
                    )
                    return
                state = (
                    ingest_pb2.SOURCE_STATE_RECONNECTING
                    if connected_before
                    else ingest_pb2.SOURCE_STATE_CONNECTING
                )
                self._set(state, f"cannot open the stream: {exc}; retrying in {backoff:g} s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, settings.reconnect_max_s)
                continue
            if connected_before:
                self.reconnects += 1
            connected_before = True
            failures = 0
            backoff = settings.reconnect_initial_s
            self._set(ingest_pb2.SOURCE_STATE_RUNNING)
            try:
                offset_s = await self._read(stream, started, offset_s)
            except Exception as exc:  # a decoder error is a broken stream, not a dead service
                log.warning(
                    "source read failed",
                    camera_id=self.spec.camera_id,
                    error_type=type(exc).__name__,
                )
                self.last_error = f"reading failed: {type(exc).__name__}"
            finally:
                await self._blocking(stream.release)
            if not self.spec.live:
                if self.spec.loop:
                    continue
                self._set(ingest_pb2.SOURCE_STATE_FINISHED)
                return
            self._set(
                ingest_pb2.SOURCE_STATE_RECONNECTING,
                f"the stream ended or broke; reconnecting in {backoff:g} s",
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, settings.reconnect_max_s)

    async def _read(self, stream: VideoStream, started: float, offset_s: float) -> float:
        """Read until the stream ends; returns the video time reached (files)."""
        fps = float(await self._blocking(stream.fps)) or 25.0
        index = 0
        position = offset_s
        while await self._blocking(stream.grab):
            self.frames_read += 1
            index += 1
            if self.spec.live:
                capture_s = time.time()
            else:
                pos = await self._blocking(stream.position_s)
                position = offset_s + (pos if pos is not None and pos > 0 else (index - 1) / fps)
                capture_s = started + position
            if not self.ingest.wants_frame(self.pipeline, capture_s):
                continue
            image = await self._blocking(stream.retrieve)
            if image is None:
                continue
            await self.ingest.offer_pulled(self.pipeline, image, capture_s, wait=not self.spec.live)
            del image
        return position + 1.0 / fps


class SourceManager:
    def __init__(self, ingest: Ingest, opener: VideoOpener, settings: IngestSettings) -> None:
        self.ingest = ingest
        self.opener = opener
        self.settings = settings
        self.sources: dict[str, SourceRunner] = {}

    def _spec(self, request: ingest_pb2.AddSourceRequest) -> SourceSpec:
        check_camera_id(request.camera_id)
        uri = request.uri.strip()
        if not uri:
            raise InvalidArgument("uri is required", reason="MISSING_URI")
        fps = request.target_fps
        if math.isnan(fps) or fps < 0 or fps > 240:
            raise InvalidArgument("target_fps must be between 0 and 240", reason="BAD_TARGET_FPS")
        fps = fps or self.settings.target_fps
        parts = urlsplit(uri)
        scheme = parts.scheme.lower()
        if scheme in LIVE_SCHEMES:
            if request.loop:
                raise InvalidArgument("loop applies to file sources only", reason="BAD_LOOP")
            return SourceSpec(request.camera_id, uri, uri, fps, False, True)
        if scheme == "file":
            path = Path(unquote(parts.path))
        elif scheme == "" or len(scheme) == 1:  # a plain path (or a Windows drive letter)
            path = Path(uri)
        else:
            raise InvalidArgument(
                f"unsupported source scheme {scheme!r}; use a file path, file://, "
                f"or one of {sorted(LIVE_SCHEMES)}",
                reason="UNSUPPORTED_URI",
            )
        path = path.resolve()
        roots = [Path(r).resolve() for r in self.settings.file_source_roots]
        if roots and not any(path.is_relative_to(root) for root in roots):
            raise PermissionDenied(
                "file sources must lie under the configured file_source_roots",
                reason="SOURCE_NOT_ALLOWED",
            )
        if not path.is_file():
            raise InvalidArgument(f"no video file at {path}", reason="SOURCE_NOT_FOUND")
        return SourceSpec(request.camera_id, uri, str(path), fps, request.loop, False)

    async def add(self, request: ingest_pb2.AddSourceRequest) -> ingest_pb2.Source:
        spec = self._spec(request)
        if spec.camera_id in self.sources:
            raise AlreadyExists(
                f"camera {spec.camera_id!r} already has a source; remove it first",
                reason="SOURCE_EXISTS",
            )
        if len(self.sources) >= self.settings.max_sources:
            raise ResourceExhausted(
                f"ingest already pulls {len(self.sources)} sources (max_sources)",
                reason="TOO_MANY_SOURCES",
            )
        pipeline = self.ingest.camera(spec.camera_id)
        pipeline.sampler = Sampler(spec.target_fps)  # the source's rate, new or known camera
        pipeline.pulled = True
        runner = SourceRunner(
            spec, ingest=self.ingest, pipeline=pipeline, opener=self.opener, settings=self.settings
        )
        self.sources[spec.camera_id] = runner
        runner.start()
        log.info("source added", camera_id=spec.camera_id, uri=redact_uri(spec.uri), live=spec.live)
        return runner.to_proto()

    async def remove(self, camera_id: str) -> ingest_pb2.Source:
        runner = self.sources.pop(camera_id, None)
        if runner is None:
            raise NotFound(f"no source for camera {camera_id!r}", reason="UNKNOWN_SOURCE")
        await runner.stop()
        runner.pipeline.pulled = False
        return runner.to_proto()

    def list(self) -> list[ingest_pb2.Source]:
        return [self.sources[cid].to_proto() for cid in sorted(self.sources)]

    async def close(self) -> None:
        runners = list(self.sources.values())
        self.sources.clear()
        await asyncio.gather(*(r.stop() for r in runners))
