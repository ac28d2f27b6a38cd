"""Fakes of the ingest service's ports (analyzer, match, deployment resolver, video sources) and
helpers that compose synthetic scenes: people (unit embeddings) moving through frames.

A synthetic frame is a tiny real PNG whose pixels encode its number, so it passes ingest's
header checks; :class:`FakeAnalyzer` answers with the faces registered for those exact bytes.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import grpc
import numpy as np
from grpc import aio

from lfr.common.errors import LfrError, NotFound, Unavailable
from lfr.common.timeutil import to_timestamp
from lfr.inference.types import (
    Box,
    DetectedFace,
    FaceDetection,
    FaceQuality,
    Float32Array,
    UInt8Array,
)
from lfr.v1 import (
    common_pb2,
    ingest_pb2,
    match_pb2,
    match_pb2_grpc,
    watchlist_pb2,
    watchlist_pb2_grpc,
)
from lfr_ingest.ports import ActiveDeployment, RgbFrame

GOOD = FaceQuality(size_px=120.0, blur=250.0, yaw=5.0, detector_score=1.2)


def person(seed: int) -> Float32Array:
    """A person's identity: a fixed random unit embedding."""
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def face(
    box: Box,
    identity: Float32Array,
    quality: FaceQuality = GOOD,
    *,
    noise: float = 0.02,
    seed: int = 0,
) -> DetectedFace:
    """A detected face of ``identity`` at ``box`` (a slightly noisy embedding, as per frame)."""
    rng = np.random.default_rng(seed)
    noisy = identity + rng.normal(scale=noise, size=128).astype(np.float32)
    emb: Float32Array = (noisy / np.linalg.norm(noisy)).astype(np.float32)
    chip = rng.integers(0, 255, size=(150, 150, 3), dtype=np.uint8)
    return DetectedFace(
        box=box,
        landmarks=np.zeros((5, 2), np.float32),
        quality=quality,
        embedding=emb,
        chip=chip,
    )


def frame_png(index: int, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real PNG, different for each ``index``."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img.reshape(-1)[:8] = np.frombuffer(index.to_bytes(8, "little"), np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return bytes(buf)


@dataclass
class FakeAnalyzer:
    """Answers ``analyze`` with the faces registered for an image; optional delay and errors."""

    delay_s: float = 0.0
    scenes: dict[bytes, list[DetectedFace]] = field(default_factory=dict)
    errors: dict[bytes, LfrError] = field(default_factory=dict)
    calls: int = 0
    concurrent: int = 0
    max_concurrent: int = 0
    is_ready: bool = True
    #: Called with each image (to observe what ingest sends).
    on_image: Callable[[bytes | RgbFrame], None] | None = None
    #: Hand out fresh copies of the registered faces and keep weak references to their arrays
    #: (to prove ingest lets go of them).
    fresh: bool = False
    handed_out: list[weakref.ref[Any]] = field(default_factory=list)

    def register(self, image: bytes, faces: Sequence[DetectedFace]) -> bytes:
        self.scenes[image] = list(faces)
        return image

    async def analyze(
        self, image: bytes | RgbFrame, *, timeout_s: float | None = None
    ) -> list[DetectedFace]:
        self.calls += 1
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            if self.on_image is not None:
                self.on_image(image)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            key = image if isinstance(image, bytes) else image.tobytes()
            if key in self.errors:
                raise self.errors[key]
            faces = list(self.scenes.get(key, []))
            if self.fresh:
                faces = [
                    DetectedFace(f.box, f.landmarks, f.quality, f.embedding.copy(), f.chip.copy())
                    for f in faces
                ]
                for f in faces:
                    self.handed_out += [weakref.ref(f.embedding), weakref.ref(f.chip)]
            return faces
        finally:
            self.concurrent -= 1

    async def detect(
        self, image: bytes | RgbFrame, *, timeout_s: float | None = None
    ) -> list[FaceDetection]:
        raise NotImplementedError

    async def embed_chips(
        self, chips: UInt8Array, *, timeout_s: float | None = None
    ) -> Float32Array:
        raise NotImplementedError

    async def ready(self) -> bool:
        return self.is_ready

    async def close(self) -> None:
        return None


@dataclass
class FakeMatcher:
    """Matches a probe when its embedding is close to one on ``watchlist``; records requests
    (without keeping their crops or embeddings unless ``keep`` is set)."""

    watchlist: dict[str, Float32Array] = field(default_factory=dict)
    threshold: float = 0.8
    delay_s: float = 0.0
    fail_next: int = 0
    refuse: bool = False
    keep: bool = False
    requests: list[match_pb2.MatchRequest] = field(default_factory=list)
    #: (camera_id, track_id, request_id) of each probe decided
    probes: list[tuple[str, int, str]] = field(default_factory=list)
    is_ready: bool = True

    async def match(self, request: match_pb2.MatchRequest) -> match_pb2.MatchResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise Unavailable("match is down (fake)")
        if self.keep:
            self.requests.append(request)
        self.probes.append((request.camera_id, request.track_id, request.request_id))
        if self.refuse:
            return match_pb2.MatchResponse(
                request_id=request.request_id,
                outcome=match_pb2.MATCH_OUTCOME_REFUSED,
                error=common_pb2.ItemError(code=9, reason="NO_DEPLOYMENT", message="no deployment"),
            )
        emb = np.asarray(request.embedding, np.float32)
        best_id, best = "", -1.0
        for entry_id, vector in self.watchlist.items():
            score = float(np.dot(emb, vector))
            if score > best:
                best_id, best = entry_id, score
        if best >= self.threshold:
            return match_pb2.MatchResponse(
                request_id=request.request_id,
                outcome=match_pb2.MATCH_OUTCOME_MATCHED,
                match=match_pb2.MatchedEntry(entry_id=best_id, score=best, rank=1),
                alert_id=f"alert-{best_id}-{request.track_id}",
                top_score=best,
            )
        return match_pb2.MatchResponse(
            request_id=request.request_id, outcome=match_pb2.MATCH_OUTCOME_NO_MATCH, top_score=best
        )

    async def ready(self) -> bool:
        return self.is_ready

    async def close(self) -> None:
        return None


@dataclass
class FakeResolver:
    """camera id -> deployment (None = no active one); cameras not listed are unknown."""

    cameras: dict[str, ActiveDeployment | None] = field(default_factory=dict)
    down: bool = False
    calls: int = 0
    is_ready: bool = True

    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        self.calls += 1
        if self.down:
            raise Unavailable("watchlist is down (fake)")
        if camera_id not in self.cameras:
            raise NotFound(f"camera {camera_id!r} is in no deployment", reason="UNKNOWN_CAMERA")
        return self.cameras[camera_id]

    async def ready(self) -> bool:
        return self.is_ready


def active(deployment_id: str = "dep-1", end_epoch: float | None = None) -> ActiveDeployment:
    return ActiveDeployment(deployment_id=deployment_id, end_epoch=end_epoch)


# --- video sources -----------------------------------------------------------------------------


@dataclass
class FakeVideoStream:
    """``frames`` RGB frames at ``fps``; ``break_after`` ends the stream early (a live break)."""

    frames: list[RgbFrame]
    fps_value: float = 10.0
    break_after: int | None = None
    index: int = -1
    released: bool = False
    grab_delay_s: float = 0.0

    def grab(self) -> bool:
        if self.grab_delay_s:
            time.sleep(self.grab_delay_s)
        if self.break_after is not None and self.index + 1 >= self.break_after:
            return False
        if self.index + 1 >= len(self.frames):
            return False
        self.index += 1
        return True

    def retrieve(self) -> RgbFrame | None:
        return self.frames[self.index]

    def position_s(self) -> float | None:
        return self.index / self.fps_value

    def fps(self) -> float:
        return self.fps_value

    def release(self) -> None:
        self.released = True


@dataclass
class FakeOpener:
    """Opens ``streams`` in turn; an ``LfrError`` in the list is raised for that attempt."""

    streams: list[FakeVideoStream | LfrError]
    opened: list[float] = field(default_factory=list)
    #: Once the list is used up: raise this (default) or reopen the last stream's frames.
    then: LfrError | None = field(default_factory=lambda: Unavailable("connection refused"))

    def open(self, uri: str, *, open_timeout_s: float, read_timeout_s: float) -> FakeVideoStream:
        self.opened.append(time.monotonic())
        if self.streams:
            item = self.streams.pop(0)
        elif self.then is not None:
            raise self.then
        else:
            raise Unavailable("nothing to open")
        if isinstance(item, LfrError):
            raise item
        return item


# --- frames ------------------------------------------------------------------------------------


def pushed(
    camera_id: str, sequence: int, image: bytes, capture_s: float | None = None
) -> ingest_pb2.Frame:
    frame = ingest_pb2.Frame(camera_id=camera_id, sequence=sequence, encoded=image)
    if capture_s is not None:
        frame.capture_time.CopyFrom(to_timestamp(capture_s))
    return frame


def walk(
    start: tuple[float, float], step: tuple[float, float], n: int, size: float = 100.0
) -> list[Box]:
    """Boxes of a face of side ``size`` moving ``step`` pixels per frame."""
    return [
        (
            start[0] + i * step[0],
            start[1] + i * step[1],
            start[0] + i * step[0] + size,
            start[1] + i * step[1] + size,
        )
        for i in range(n)
    ]


# --- in-process gRPC doubles of match and watchlist (real servers on port 0) --------------------


class MatchServiceDouble(match_pb2_grpc.MatchServiceServicer):
    """MatchService deciding with a :class:`FakeMatcher`; ``break_after`` aborts the stream
    (UNAVAILABLE) after that many probes, once."""

    def __init__(self, matcher: FakeMatcher | None = None) -> None:
        self.matcher = matcher or FakeMatcher()
        self.break_after: int | None = None
        self.received: list[str] = []
        self.streams = 0

    async def MatchStream(self, request_iterator: Any, context: Any) -> Any:
        self.streams += 1
        async for request in request_iterator:
            self.received.append(request.request_id)
            if self.break_after is not None and len(self.received) > self.break_after:
                self.break_after = None
                await context.abort(grpc.StatusCode.UNAVAILABLE, "stream reset (double)")
            yield await self.matcher.match(request)

    async def Match(self, request: Any, context: Any) -> Any:
        self.received.append(request.request_id)
        return await self.matcher.match(request)


class WatchlistServiceDouble(watchlist_pb2_grpc.WatchlistServiceServicer):
    """ResolveCamera from a dict: camera -> active (True/False); unknown cameras NOT_FOUND."""

    def __init__(self, cameras: dict[str, bool] | None = None) -> None:
        self.cameras = dict(cameras or {})
        self.end_time: float | None = None
        self.calls = 0

    async def ResolveCamera(self, request: Any, context: Any) -> Any:
        self.calls += 1
        if request.camera_id not in self.cameras:
            await context.abort(grpc.StatusCode.NOT_FOUND, "camera in no deployment (double)")
        if not self.cameras[request.camera_id]:
            return watchlist_pb2.ResolveCameraResponse(active=False)
        deployment = watchlist_pb2.Deployment(
            deployment_id="dep-double", camera_ids=[request.camera_id], watchlist_id="wl"
        )
        if self.end_time is not None:
            deployment.end_time.CopyFrom(to_timestamp(self.end_time))
        return watchlist_pb2.ResolveCameraResponse(
            active=True, deployment=deployment, index_name="idx:wl"
        )


def match_double(matcher: FakeMatcher | None = None) -> MatchServiceDouble:
    return MatchServiceDouble(matcher)  # type: ignore[abstract]  # GetStats: UNIMPLEMENTED


def watchlist_double(cameras: dict[str, bool] | None = None) -> WatchlistServiceDouble:
    return WatchlistServiceDouble(cameras)  # type: ignore[abstract]  # others: UNIMPLEMENTED


@dataclass
class Doubles:
    server: aio.Server
    addr: str
    match: MatchServiceDouble
    watchlist: WatchlistServiceDouble
    health: Any

    async def stop(self) -> None:
        await self.server.stop(0)


async def serve_doubles(
    match: MatchServiceDouble | None = None, watchlist: WatchlistServiceDouble | None = None
) -> Doubles:
    """Match and watchlist doubles with grpc.health (SERVING) on one in-process server."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

    match = match or match_double()
    watchlist = watchlist or watchlist_double()
    server = aio.server()
    match_pb2_grpc.add_MatchServiceServicer_to_server(match, server)
    watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(watchlist, server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", "lfr.v1.MatchService", "lfr.v1.WatchlistService"):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return Doubles(server, f"127.0.0.1:{port}", match, watchlist, health)
