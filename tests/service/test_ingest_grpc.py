"""The ingest service in-process on port 0, with fakes behind its ports: health (NOT_SERVING until
Triton, match and watchlist answer), reflection, and every RPC's real answers and errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lfr.common.server import RunningServer
from lfr.v1 import ingest_pb2, ingest_pb2_grpc
from lfr_ingest.server import IngestDeps, build_server
from lfr_ingest.settings import IngestSettings
from tests.unit.ingest_fakes import (
    FakeAnalyzer,
    FakeMatcher,
    FakeOpener,
    FakeResolver,
    FakeVideoStream,
    active,
    face,
    frame_png,
    person,
    pushed,
    walk,
)

S = ingest_pb2
T0 = 1_700_000_000.0


@dataclass
class Running:
    server: RunningServer
    channel: aio.Channel
    stub: ingest_pb2_grpc.IngestServiceAsyncStub
    analyzer: FakeAnalyzer
    matcher: FakeMatcher
    resolver: FakeResolver
    opener: FakeOpener


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    analyzer = FakeAnalyzer()
    matcher = FakeMatcher(watchlist={"wanted": person(9)})
    resolver = FakeResolver({"cam-1": active(), "cam-2": active(), "cam-off": None})
    opener = FakeOpener([FakeVideoStream([np.zeros((24, 32, 3), np.uint8)] * 20)])
    deps = IngestDeps(
        analyzer=analyzer,
        matcher=matcher,
        resolver=resolver,
        opener=opener,
        ready={"triton": analyzer.ready, "match": matcher.ready, "watchlist": resolver.ready},
    )
    settings = IngestSettings(
        port=0,
        target_fps=0,
        best_shot_window_s=0,
        reprobe_interval_s=0,
        deployment_cache_s=0,
        max_frame_bytes=200_000,
        max_receive_message_bytes=1_000_000,
        health_interval_s=60,
    )
    server = await build_server(settings, deps)
    await server.start()
    channel = aio.insecure_channel(server.address)
    try:
        yield Running(
            server,
            channel,
            ingest_pb2_grpc.IngestServiceStub(channel),
            analyzer,
            matcher,
            resolver,
            opener,
        )
    finally:
        await channel.close(None)
        await server.stop(0)


async def health(r: Running) -> int:
    reply = await health_pb2_grpc.HealthStub(r.channel).Check(
        health_pb2.HealthCheckRequest(service="lfr.v1.IngestService"), timeout=5
    )
    return int(reply.status)


async def test_health_is_not_serving_until_every_dependency_answers(r: Running) -> None:
    serving = health_pb2.HealthCheckResponse.SERVING
    assert await r.server.check_dependencies()
    assert await health(r) == serving
    for fake in (r.analyzer, r.matcher, r.resolver):
        fake.is_ready = False
        assert not await r.server.check_dependencies()
        assert await health(r) == health_pb2.HealthCheckResponse.NOT_SERVING
        fake.is_ready = True
    assert await r.server.check_dependencies()
    assert await health(r) == serving


@pytest.fixture
def r(running: Running) -> Running:
    return running


async def test_reflection_lists_the_service(r: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(r.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert {"lfr.v1.IngestService", "grpc.health.v1.Health"} <= names


async def test_stream_frames_answers_every_frame_in_order_and_keeps_going(r: Running) -> None:
    frames: list[ingest_pb2.Frame] = []
    boxes = walk((0, 0), (10, 0), 6)
    for i in range(6):
        png = r.analyzer.register(frame_png(i), [face(boxes[i], person(9), seed=i)])
        frames.append(pushed("cam-1", i, png, T0 + i * 0.2))
    # Bad frames between frames 2 (0.4 s) and 3 (0.6 s); capture times keep the order except
    # for the one that goes back in time.
    bad = [
        pushed("cam-1", 100, b"\xff\xd8\xff" + bytes(50), T0 + 0.41),  # corrupt JPEG
        pushed("cam-1", 101, b"", T0 + 0.42),  # zero-length
        pushed("ghost", 102, frame_png(1), T0 + 0.43),  # unknown camera
        pushed("cam-off", 103, frame_png(1), T0 + 0.44),  # no active deployment
        pushed("cam-1", 104, b"\x89PNG\r\n\x1a\n" + bytes(250_000), T0 + 0.45),  # too large
        pushed("cam-1", 105, frame_png(2), T0),  # goes back in time
    ]
    last = pushed("cam-1", 106, r.analyzer.register(frame_png(3), []), T0 + 1.2)
    sent = [*frames[:3], *bad, *frames[3:], last]
    results = [res async for res in r.stub.StreamFrames(iter(sent), timeout=10)]
    assert [res.sequence for res in results] == [f.sequence for f in sent]
    by_seq = {res.sequence: res for res in results}
    assert [by_seq[s].error.reason for s in range(100, 106)] == [
        "BAD_IMAGE",
        "EMPTY_IMAGE",
        "UNKNOWN_CAMERA",
        "NO_DEPLOYMENT",
        "IMAGE_TOO_LARGE",
        "OUT_OF_ORDER",
    ]
    assert by_seq[103].status == S.FRAME_STATUS_DROPPED_NO_DEPLOYMENT
    assert all(by_seq[s].status == S.FRAME_STATUS_REJECTED for s in (100, 101, 102, 104, 105))
    assert all(by_seq[s].error.message for s in range(100, 106))
    good = [by_seq[s] for s in range(6)] + [by_seq[106]]
    assert all(res.status == S.FRAME_STATUS_PROCESSED for res in good)
    assert by_seq[0].matches == 1 and by_seq[0].alert_ids
    assert {f.track_id for res in good for f in res.faces} == {1}

    stats = await r.stub.GetStats(S.GetIngestStatsRequest(camera_id="cam-1"), timeout=5)
    (cam,) = stats.cameras
    assert cam.frames_processed == 7 and cam.frames_rejected == 4 and cam.matches == 1
    assert cam.probes == 1 and cam.tracks == 1 and cam.latency.count == 7
    everything = await r.stub.GetStats(S.GetIngestStatsRequest(), timeout=5)
    assert [c.camera_id for c in everything.cameras] == ["cam-1", "cam-off"]


async def test_raw_frames(r: Running) -> None:
    rgb = np.zeros((48, 64, 3), np.uint8)
    r.analyzer.scenes[rgb.tobytes()] = [face((5, 5, 45, 45), person(3))]
    frame = S.Frame(
        camera_id="cam-2", sequence=1, raw=S.RawImage(width=64, height=48, rgb=rgb.tobytes())
    )
    results = [res async for res in r.stub.StreamFrames(iter([frame]), timeout=10)]
    assert results[0].status == S.FRAME_STATUS_PROCESSED and results[0].faces_found == 1


async def test_a_fast_sender_is_slowed_not_buffered(r: Running) -> None:
    """With a slow pipeline, every frame is still answered, most of them dropped."""
    r.analyzer.delay_s = 0.05

    async def frames() -> AsyncIterator[ingest_pb2.Frame]:
        for i in range(60):
            yield pushed("cam-1", i, frame_png(i), time.time())
            await asyncio.sleep(0.005)

    results = [res async for res in r.stub.StreamFrames(frames(), timeout=20)]
    assert [res.sequence for res in results] == list(range(60))
    dropped = sum(res.status == S.FRAME_STATUS_DROPPED_BACKPRESSURE for res in results)
    processed = sum(res.status == S.FRAME_STATUS_PROCESSED for res in results)
    assert dropped + processed == 60 and dropped > 30


async def test_sources_add_list_remove(r: Running, tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"fake")
    added = await r.stub.AddSource(
        S.AddSourceRequest(camera_id="cam-2", uri=str(clip), target_fps=0), timeout=5
    )
    assert added.camera_id == "cam-2" and added.uri == str(clip)
    for _ in range(200):
        listed = await r.stub.ListSources(S.ListSourcesRequest(), timeout=5)
        if listed.sources[0].state == S.SOURCE_STATE_FINISHED:
            break
        await asyncio.sleep(0.02)
    (source,) = listed.sources
    assert source.state == S.SOURCE_STATE_FINISHED and source.frames_read == 20
    assert source.state_since.seconds > 0
    removed = await r.stub.RemoveSource(S.RemoveSourceRequest(camera_id="cam-2"), timeout=5)
    assert removed.source.state == S.SOURCE_STATE_FINISHED
    assert (await r.stub.ListSources(S.ListSourcesRequest(), timeout=5)).sources == []


async def rpc_error(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(aio.AioRpcError) as info:
        await call
    metadata: Any = info.value.trailing_metadata() or ()
    return info.value.code(), next((str(v) for k, v in metadata if k == "lfr-reason"), "")


async def test_bad_requests(r: Running, tmp_path: Path) -> None:
    stub = r.stub
    assert await rpc_error(stub.AddSource(S.AddSourceRequest(uri="rtsp://x/y"), timeout=5)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MISSING_CAMERA_ID",
    )
    assert await rpc_error(
        stub.AddSource(S.AddSourceRequest(camera_id="c", uri=str(tmp_path / "no.mp4")), timeout=5)
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "SOURCE_NOT_FOUND")
    await stub.AddSource(S.AddSourceRequest(camera_id="c", uri="rtsp://127.0.0.1:1/x"), timeout=5)
    assert await rpc_error(
        stub.AddSource(S.AddSourceRequest(camera_id="c", uri="rtsp://127.0.0.1:1/y"), timeout=5)
    ) == (grpc.StatusCode.ALREADY_EXISTS, "SOURCE_EXISTS")
    assert await rpc_error(
        stub.RemoveSource(S.RemoveSourceRequest(camera_id="nope"), timeout=5)
    ) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_SOURCE")
    assert await rpc_error(
        stub.GetStats(S.GetIngestStatsRequest(camera_id="never-seen"), timeout=5)
    ) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_CAMERA")
