"""Ingest's adapters against real in-process gRPC doubles (port 0) and real video files:
the MatchStream client (pairing, concurrency, a broken stream retried once, deadlines), the
ResolveCamera resolver, and the OpenCV video opener."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from lfr.common.channels import open_channel
from lfr.common.errors import DeadlineExceeded, NotFound, Unavailable
from lfr.v1 import match_pb2
from lfr_ingest.adapters.match import StreamingMatchClient
from lfr_ingest.adapters.video import OpenCvOpener
from lfr_ingest.adapters.watchlist import GrpcDeploymentResolver
from tests.unit.ingest_fakes import (
    Doubles,
    FakeMatcher,
    match_double,
    person,
    serve_doubles,
    watchlist_double,
)


@pytest.fixture
async def doubles() -> AsyncIterator[Doubles]:
    matcher = FakeMatcher(watchlist={"e-1": person(1)})
    d = await serve_doubles(
        match_double(matcher), watchlist_double({"cam-1": True, "cam-off": False})
    )
    yield d
    await d.stop()


def probe(request_id: str, who: int) -> match_pb2.MatchRequest:
    return match_pb2.MatchRequest(
        request_id=request_id, camera_id="cam-1", embedding=person(who).tolist(), track_id=who
    )


async def test_match_stream_pairs_answers_with_probes(doubles: Doubles) -> None:
    channel = open_channel(doubles.addr)
    client = StreamingMatchClient(channel, timeout_s=5)
    try:
        assert await client.ready()
        replies = await asyncio.gather(*(probe_reply(client, i) for i in range(20)))
        for i, reply in enumerate(replies):
            assert reply.request_id == f"p{i}"
            expected = (
                match_pb2.MATCH_OUTCOME_MATCHED if i % 2 else match_pb2.MATCH_OUTCOME_NO_MATCH
            )
            assert reply.outcome == expected
        assert doubles.match.streams == 1  # one stream for all of them
    finally:
        await client.close()
        await channel.close(None)


async def probe_reply(client: StreamingMatchClient, i: int) -> match_pb2.MatchResponse:
    return await client.match(probe(f"p{i}", 1 if i % 2 else 2))


async def test_a_broken_stream_is_retried_once_with_the_same_request_id(doubles: Doubles) -> None:
    channel = open_channel(doubles.addr)
    client = StreamingMatchClient(channel, timeout_s=5)
    try:
        await client.match(probe("a", 2))
        doubles.match.break_after = 1
        reply = await client.match(probe("b", 1))
        assert reply.outcome == match_pb2.MATCH_OUTCOME_MATCHED
        assert doubles.match.received == ["a", "b", "b"]
        assert doubles.match.streams == 2
    finally:
        await client.close()
        await channel.close(None)


async def test_no_decision_in_time_is_deadline_exceeded(doubles: Doubles) -> None:
    doubles.match.matcher.delay_s = 1.0
    channel = open_channel(doubles.addr)
    client = StreamingMatchClient(channel, timeout_s=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await client.match(probe("slow", 1))
        assert time.monotonic() - started < 0.8
    finally:
        await client.close()
        await channel.close(None)


async def test_match_unreachable_is_unavailable() -> None:
    channel = open_channel("127.0.0.1:1")
    client = StreamingMatchClient(channel, timeout_s=2)
    try:
        with pytest.raises(Unavailable):
            await client.match(probe("x", 1))
        with pytest.raises(Exception):  # noqa: B017  the health check cannot connect either
            await client.ready()
    finally:
        await client.close()
        await channel.close(None)


async def test_resolver_maps_the_three_answers(doubles: Doubles) -> None:
    channel = open_channel(doubles.addr)
    resolver = GrpcDeploymentResolver(channel, timeout_s=2)
    try:
        assert await resolver.ready()
        deployment = await resolver.resolve("cam-1")
        assert deployment is not None and deployment.deployment_id == "dep-double"
        assert deployment.end_epoch is None
        doubles.watchlist.end_time = 2_000_000_000.0
        deployment = await resolver.resolve("cam-1")
        assert deployment is not None and deployment.end_epoch == 2_000_000_000.0
        assert await resolver.resolve("cam-off") is None
        with pytest.raises(NotFound) as info:
            await resolver.resolve("ghost")
        assert info.value.reason == "UNKNOWN_CAMERA"
    finally:
        await channel.close(None)


async def test_resolver_unreachable_is_unavailable() -> None:
    channel = open_channel("127.0.0.1:1")
    try:
        with pytest.raises(Unavailable):
            await GrpcDeploymentResolver(channel, timeout_s=1).resolve("cam-1")
    finally:
        await channel.close(None)


def write_video(path: Path, n: int, fps: float = 10.0, size: tuple[int, int] = (160, 120)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, :, 2] = 200  # red in BGR
        cv2.putText(img, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(img)
    writer.release()


def test_opencv_opener_reads_a_file_as_rgb_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_video(path, 12)
    stream = OpenCvOpener().open(str(path), open_timeout_s=5, read_timeout_s=5)
    try:
        assert stream.fps() == pytest.approx(10.0)
        positions = []
        while stream.grab():
            rgb = stream.retrieve()
            assert rgb is not None and rgb.shape == (120, 160, 3)
            assert rgb[5, 5, 0] > 150 and rgb[5, 5, 2] < 60  # red is channel 0: RGB, not BGR
            positions.append(stream.position_s())
        assert len(positions) == 12
        assert positions == pytest.approx([i / 10 for i in range(12)], abs=1e-3)
    finally:
        stream.release()


def test_opencv_opener_refuses_what_it_cannot_open(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(Unavailable):
        OpenCvOpener().open(str(bogus), open_timeout_s=2, read_timeout_s=2)
