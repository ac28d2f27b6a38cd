"""Pull sources against a fake video opener: files to the end, loops, live streams that break
and come back (exponential backoff), giving up, validation of AddSource, removal."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lfr.common.errors import (
    AlreadyExists,
    InvalidArgument,
    LfrError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from lfr.v1 import ingest_pb2
from lfr_ingest.ingest import Ingest
from lfr_ingest.ports import RgbFrame
from lfr_ingest.settings import IngestSettings
from lfr_ingest.sources import SourceManager, redact_uri
from tests.unit.ingest_fakes import (
    FakeAnalyzer,
    FakeMatcher,
    FakeOpener,
    FakeResolver,
    FakeVideoStream,
    active,
    frame_png,
    pushed,
)

S = ingest_pb2


def frames(n: int) -> list[RgbFrame]:
    return [np.full((24, 32, 3), i % 256, np.uint8) for i in range(n)]


def make(
    opener: FakeOpener, analyzer: FakeAnalyzer | None = None, **overrides: Any
) -> tuple[SourceManager, Ingest, FakeAnalyzer]:
    options: dict[str, Any] = {
        "target_fps": 5,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
        "deployment_cache_s": 0,
        "track_ttl_s": 0.2,
    }
    options.update(overrides)
    settings = IngestSettings(**options)
    analyzer = analyzer or FakeAnalyzer()
    resolver = FakeResolver({f"cam-{i}": active() for i in range(1, 5)})
    ingest = Ingest(settings, analyzer=analyzer, matcher=FakeMatcher(), resolver=resolver)
    return SourceManager(ingest, opener, settings), ingest, analyzer


async def until(check: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def video(tmp_path: Path) -> str:
    path = tmp_path / "clip.avi"
    path.write_bytes(b"not really a video; the fake opener does not read it")
    return str(path)


async def test_a_file_is_read_to_the_end_without_drops(video: str) -> None:
    opener = FakeOpener([FakeVideoStream(frames(30), fps_value=10)])
    analyzer = FakeAnalyzer(delay_s=0.01)
    sources, ingest, _ = make(opener, analyzer)
    added = await sources.add(S.AddSourceRequest(camera_id="cam-1", uri=video))
    assert added.state == S.SOURCE_STATE_CONNECTING and added.target_fps == 5
    runner = sources.sources["cam-1"]
    await until(lambda: runner.state == S.SOURCE_STATE_FINISHED)
    await until(lambda: ingest.stats("cam-1")[0].frames_processed == 15)
    (listed,) = sources.list()
    assert listed.frames_read == 30 and listed.state == S.SOURCE_STATE_FINISHED
    stats = ingest.stats("cam-1")[0]
    assert stats.frames_in == 30
    assert stats.frames_skipped_sampling == 15  # 10 fps video, 5 fps target: video time
    assert stats.frames_dropped_backpressure == 0  # a file waits instead
    assert analyzer.calls == 15


async def test_a_looping_file_goes_on_until_removed(video: str) -> None:
    opener = FakeOpener([FakeVideoStream(frames(5), fps_value=10) for _ in range(50)])
    sources, ingest, _ = make(opener, target_fps=0)
    await sources.add(S.AddSourceRequest(camera_id="cam-1", uri=video, loop=True))
    await until(lambda: sources.sources["cam-1"].frames_read >= 12)
    removed = await sources.remove("cam-1")
    assert removed.state == S.SOURCE_STATE_STOPPED and removed.frames_read >= 12
    assert sources.list() == []
    await until(lambda: ingest.stats("cam-1")[0].frames_processed >= 10)
    assert ingest.stats("cam-1")[0].frames_rejected == 0  # video time kept going forward


async def test_a_file_that_cannot_be_opened_fails(video: str) -> None:
    sources, _, _ = make(FakeOpener([Unavailable("moov atom not found")]))
    await sources.add(S.AddSourceRequest(camera_id="cam-1", uri=video))
    runner = sources.sources["cam-1"]
    await until(lambda: runner.state == S.SOURCE_STATE_FAILED)
    assert "moov atom not found" in runner.last_error


async def test_a_live_stream_reconnects_with_backoff() -> None:
    first = FakeVideoStream(frames(1000), break_after=5, grab_delay_s=0.005)
    second = FakeVideoStream(frames(1000), grab_delay_s=0.005)
    refused = Unavailable("connection refused")
    opener = FakeOpener([first, refused, refused, refused, second])
    sources, ingest, _ = make(opener, target_fps=0)
    await sources.add(S.AddSourceRequest(camera_id="cam-2", uri="rtsp://user:pw@cam.local/s"))
    runner = sources.sources["cam-2"]
    seen: list[int] = []

    async def watch() -> None:
        while True:
            if not seen or seen[-1] != runner.state:
                seen.append(runner.state)
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    await until(lambda: runner.reconnects == 1 and runner.frames_read > 10)
    watcher.cancel()
    assert first.released
    assert seen[:3] == [
        S.SOURCE_STATE_RUNNING,
        S.SOURCE_STATE_RECONNECTING,
        S.SOURCE_STATE_RUNNING,
    ] or seen[:4] == [
        S.SOURCE_STATE_CONNECTING,
        S.SOURCE_STATE_RUNNING,
        S.SOURCE_STATE_RECONNECTING,
        S.SOURCE_STATE_RUNNING,
    ]
    gaps = np.diff(opener.opened)
    # break -> 0.05 s -> refused -> 0.1 -> refused -> 0.2 -> refused -> 0.2 (capped) -> open
    assert gaps[1] >= 0.09 and gaps[2] >= 0.18 and gaps[3] >= 0.18 and gaps[3] < 0.5
    (listed,) = sources.list()
    assert listed.uri == "rtsp://user:***@cam.local/s"  # never hand the password back
    assert listed.state == S.SOURCE_STATE_RUNNING and listed.reconnects == 1
    await sources.close()
    assert second.released
    # Every frame read was admitted, but for one the stop may have caught in between.
    assert runner.frames_read - ingest.stats("cam-2")[0].frames_in in (0, 1)


async def test_a_live_stream_gives_up_after_max_attempts() -> None:
    opener = FakeOpener([Unavailable("no route to host")] * 3)
    sources, _, _ = make(opener, reconnect_max_attempts=3)
    await sources.add(S.AddSourceRequest(camera_id="cam-1", uri="rtsp://10.0.0.1/s"))
    runner = sources.sources["cam-1"]
    await until(lambda: runner.state == S.SOURCE_STATE_FAILED)
    assert "gave up after 3" in runner.last_error and "no route to host" in runner.last_error


async def test_live_frames_are_dropped_when_the_pipeline_is_behind() -> None:
    stream = FakeVideoStream(frames(60), grab_delay_s=0.004)
    analyzer = FakeAnalyzer(delay_s=0.04)
    sources, ingest, _ = make(
        FakeOpener([stream]), analyzer, target_fps=0, reconnect_max_attempts=1
    )
    await sources.add(S.AddSourceRequest(camera_id="cam-1", uri="http://cam.local/mjpg"))
    await until(lambda: sources.sources["cam-1"].state == S.SOURCE_STATE_FAILED)
    await until(lambda: ingest.cameras["cam-1"].queue.__len__() == 0, within_s=3)
    await asyncio.sleep(0.1)
    stats = ingest.stats("cam-1")[0]
    assert stats.frames_in == 60
    assert stats.frames_dropped_backpressure > 20
    assert stats.frames_processed + stats.frames_dropped_backpressure == 60


async def test_pushed_frames_are_refused_while_pulled_and_accepted_after(video: str) -> None:
    opener = FakeOpener([FakeVideoStream(frames(5)) for _ in range(100)])
    sources, ingest, _ = make(opener)
    await sources.add(S.AddSourceRequest(camera_id="cam-3", uri=video, loop=True))
    result = await (await ingest.submit(pushed("cam-3", 1, frame_png(1), time.time() + 100)))
    assert result.error.reason == "CAMERA_HAS_SOURCE"
    await sources.remove("cam-3")
    result = await (await ingest.submit(pushed("cam-3", 2, frame_png(2), time.time() + 200)))
    assert result.status == S.FRAME_STATUS_PROCESSED


@pytest.mark.parametrize(
    ("request_kwargs", "error", "reason"),
    [
        ({"camera_id": "", "uri": "rtsp://x/y"}, InvalidArgument, "MISSING_CAMERA_ID"),
        ({"camera_id": "cam-1", "uri": ""}, InvalidArgument, "MISSING_URI"),
        ({"camera_id": "cam-1", "uri": "ftp://x/y.mp4"}, InvalidArgument, "UNSUPPORTED_URI"),
        ({"camera_id": "cam-1", "uri": "{tmp}/no-such.mp4"}, InvalidArgument, "SOURCE_NOT_FOUND"),
        ({"camera_id": "cam-1", "uri": "rtsp://x/y", "loop": True}, InvalidArgument, "BAD_LOOP"),
        (
            {"camera_id": "cam-1", "uri": "rtsp://x/y", "target_fps": -1},
            InvalidArgument,
            "BAD_TARGET_FPS",
        ),
        ({"camera_id": "cam-1", "uri": "/etc/hostname"}, PermissionDenied, "SOURCE_NOT_ALLOWED"),
    ],
)
async def test_add_source_validation(
    request_kwargs: dict[str, Any], error: type[LfrError], reason: str, tmp_path: Path
) -> None:
    sources, _, _ = make(FakeOpener([]), file_source_roots=(str(tmp_path),))
    request_kwargs["uri"] = request_kwargs["uri"].replace("{tmp}", str(tmp_path))
    with pytest.raises(error) as info:
        await sources.add(S.AddSourceRequest(**request_kwargs))
    assert info.value.reason == reason
    assert sources.list() == []


async def test_file_uri_under_an_allowed_root(tmp_path: Path) -> None:
    clip = tmp_path / "a clip.avi"
    clip.write_bytes(b"x")
    sources, _, _ = make(
        FakeOpener([FakeVideoStream(frames(2))]), file_source_roots=(str(tmp_path),)
    )
    added = await sources.add(S.AddSourceRequest(camera_id="cam-1", uri=clip.as_uri()))
    assert added.uri == clip.as_uri()
    assert sources.sources["cam-1"].spec.target == str(clip)
    await sources.close()


async def test_duplicates_limits_and_unknown_removal(video: str) -> None:
    sources, _, _ = make(FakeOpener([Unavailable("down")] * 100), max_sources=2)
    await sources.add(S.AddSourceRequest(camera_id="cam-1", uri="rtsp://a/1"))
    with pytest.raises(AlreadyExists):
        await sources.add(S.AddSourceRequest(camera_id="cam-1", uri="rtsp://a/2"))
    await sources.add(S.AddSourceRequest(camera_id="cam-2", uri="rtsp://a/2"))
    with pytest.raises(ResourceExhausted):
        await sources.add(S.AddSourceRequest(camera_id="cam-3", uri="rtsp://a/3"))
    with pytest.raises(NotFound):
        await sources.remove("cam-9")
    await sources.close()
    assert sources.list() == []


def test_redact_uri() -> None:
    assert (
        redact_uri("rtsp://admin:s3cret@10.0.0.5:554/live") == "rtsp://admin:***@10.0.0.5:554/live"
    )
    assert redact_uri("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"
    assert redact_uri("/videos/a.mp4") == "/videos/a.mp4"
