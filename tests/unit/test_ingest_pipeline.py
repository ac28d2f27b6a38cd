"""The ingest core against fakes of its ports: admission order and per-frame errors, sampling,
newest-wins backpressure with results in order, one probe per track, re-probes, forgetting,
statistics, the deployment cache and the faces-seen audit counts."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import numpy as np
import pytest

from lfr.common.errors import NotFound, Unavailable
from lfr.inference.types import FaceQuality
from lfr.v1 import ingest_pb2
from lfr_ingest.audit_report import FacesSeenReporter
from lfr_ingest.deployments import CachedResolver
from lfr_ingest.ingest import Ingest
from lfr_ingest.pipeline import FrameResult
from lfr_ingest.ports import ActiveDeployment
from lfr_ingest.settings import IngestSettings
from tests.unit.ingest_fakes import (
    FakeAnalyzer,
    FakeMatcher,
    FakeResolver,
    active,
    face,
    frame_png,
    person,
    pushed,
    walk,
)

S = ingest_pb2
T0 = 1_700_000_000.0


def make(
    analyzer: FakeAnalyzer | None = None,
    matcher: FakeMatcher | None = None,
    resolver: FakeResolver | None = None,
    **overrides: Any,
) -> tuple[Ingest, FakeAnalyzer, FakeMatcher, FakeResolver]:
    options: dict[str, Any] = {
        "target_fps": 0,
        "queue_size": 2,
        "track_ttl_s": 0.5,
        "best_shot_window_s": 0.0,
        "reprobe_interval_s": 0.0,
        "deployment_cache_s": 0.0,
    }
    options.update(overrides)
    analyzer = analyzer or FakeAnalyzer()
    matcher = matcher or FakeMatcher()
    resolver = resolver or FakeResolver({"cam-1": active(), "cam-2": active(), "cam-3": active()})
    ingest = Ingest(
        IngestSettings(**options), analyzer=analyzer, matcher=matcher, resolver=resolver
    )
    return ingest, analyzer, matcher, resolver


async def run_frames(ingest: Ingest, frames: list[ingest_pb2.Frame]) -> list[FrameResult]:
    """Submit one at a time, each after the previous result (a well-behaved camera)."""
    return [await (await ingest.submit(f)) for f in frames]


def scene(
    analyzer: FakeAnalyzer,
    people: dict[int, list[Any]],
    n: int,
    dt: float = 0.2,
    cam: str = "cam-1",
) -> list[ingest_pb2.Frame]:
    """Frames 0..n-1 where person ``p`` is at ``people[p][i]`` (a box, or None = not in view)."""
    frames = []
    for i in range(n):
        faces = [
            face(boxes[i], person(p), seed=1000 * p + i)
            for p, boxes in people.items()
            if boxes[i] is not None
        ]
        png = analyzer.register(frame_png(i + 1000 * hash(cam) % 997), faces)
        frames.append(pushed(cam, i, png, T0 + i * dt))
    return frames


# --- one probe per person per track ------------------------------------------------------------


async def test_each_person_is_probed_once_per_track_not_once_per_frame() -> None:
    ingest, analyzer, matcher, _ = make()
    frames = scene(analyzer, {1: walk((0, 0), (20, 0), 12), 2: walk((600, 50), (-15, 5), 12)}, 12)
    results = await run_frames(ingest, frames)
    assert [r.status for r in results] == [S.FRAME_STATUS_PROCESSED] * 12
    assert [r.sequence for r in results] == list(range(12))
    assert all(r.faces_found == 2 for r in results)
    assert sum(r.probes_sent for r in results) == 2
    track_ids = {f.track_id for r in results for f in r.faces}
    assert track_ids == {1, 2}
    assert sorted(t for _, t, _ in matcher.probes) == [1, 2]
    stats = ingest.stats("cam-1")[0]
    assert (stats.tracks, stats.probes, stats.faces_detected) == (2, 2, 24)
    assert stats.frames_in == stats.frames_processed == 12
    assert stats.latency.count == 12 and stats.latency.p50_ms > 0


async def test_a_person_who_leaves_and_returns_is_a_new_track() -> None:
    ingest, analyzer, matcher, _ = make(track_ttl_s=0.5)
    boxes: list[Any] = walk((0, 0), (10, 0), 12)
    for i in range(4, 8):
        boxes[i] = None  # out of view for 0.8 s > ttl
    results = await run_frames(ingest, scene(analyzer, {1: boxes}, 12))
    assert sorted({f.track_id for r in results for f in r.faces}) == [1, 2]
    assert len(matcher.probes) == 2


async def test_first_probe_waits_for_the_best_shot_window() -> None:
    ingest, analyzer, matcher, _ = make(best_shot_window_s=0.5)
    matcher.keep = True
    qualities = [
        FaceQuality(50, 60, 30, 0.3),
        FaceQuality(140, 280, 1, 1.8),
        FaceQuality(80, 90, 9, 1),
    ]
    frames = []
    for i, box in enumerate(walk((0, 0), (10, 0), 6)):
        f = face(box, person(1), qualities[i % 3], seed=i)
        frames.append(pushed("cam-1", i, analyzer.register(frame_png(i), [f]), T0 + i * 0.2))
    results = await run_frames(ingest, frames)
    assert [r.probes_sent for r in results] == [0, 0, 0, 1, 0, 0]  # at 0.6 s >= 0.5 s
    assert [f.probed for r in results for f in r.faces] == [False, False, False, True, False, False]
    (probe,) = matcher.requests
    assert probe.quality.size_px == 140 and probe.track_id == 1
    assert probe.crop_jpeg.startswith(b"\xff\xd8") and len(probe.embedding) == 128
    assert probe.camera_id == "cam-1" and probe.model_version


async def test_faces_below_the_quality_gate_are_counted_but_not_probed() -> None:
    ingest, analyzer, matcher, _ = make(min_face_px=80)
    frames = []
    for i, box in enumerate(walk((0, 0), (10, 0), 4)):
        small = face(box, person(1), FaceQuality(40, 200, 0, 1.0), seed=i)
        frames.append(pushed("cam-1", i, analyzer.register(frame_png(i), [small]), T0 + i * 0.2))
    results = await run_frames(ingest, frames)
    assert all(not f.passed_quality for r in results for f in r.faces)
    assert matcher.probes == []
    stats = ingest.stats("cam-1")[0]
    assert stats.faces_rejected_quality == 4 and stats.tracks == 1 and stats.probes == 0


async def test_reprobe_interval() -> None:
    ingest, analyzer, matcher, _ = make(reprobe_interval_s=1.0)
    results = await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 16)}, 16))
    # probes at 0.0, 1.0, 2.0, 3.0 s of capture time
    assert [r.sequence for r in results if r.probes_sent] == [0, 5, 10, 15]
    assert {t for _, t, _ in matcher.probes} == {1}


async def test_a_match_is_reported_and_the_track_is_not_probed_again() -> None:
    matcher = FakeMatcher(watchlist={"entry-7": person(7)})
    ingest, analyzer, _, _ = make(matcher=matcher, reprobe_interval_s=0.4)
    frames = scene(analyzer, {7: walk((0, 0), (5, 0), 8), 1: walk((500, 0), (5, 0), 8)}, 8)
    results = await run_frames(ingest, frames)
    assert results[0].matches == 1 and list(results[0].alert_ids) == ["alert-entry-7-1"]
    assert all(f.matched == (f.track_id == 1) for r in results for f in r.faces)
    probes = [t for _, t, _ in matcher.probes]
    assert probes.count(1) == 1  # matched: never again
    assert probes.count(2) == 4  # not matched: every 0.4 s (0, 0.4, 0.8, 1.2)
    assert ingest.stats("cam-1")[0].matches == 1


# --- per-frame errors: the stream keeps going -----------------------------------------------------


async def test_admission_errors_each_have_a_clear_reason() -> None:
    resolver = FakeResolver({"cam-1": active(), "idle-cam": None})
    ingest, analyzer, _, _ = make(resolver=resolver, max_frame_bytes=50_000)
    png = frame_png(1)
    corrupt = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
    cases = [
        (pushed("cam-1", 1, png, T0 + 1), S.FRAME_STATUS_PROCESSED, ""),
        (pushed("cam-1", 2, corrupt, T0 + 2), S.FRAME_STATUS_REJECTED, "BAD_IMAGE"),
        (pushed("cam-1", 3, b"", T0 + 3), S.FRAME_STATUS_REJECTED, "EMPTY_IMAGE"),
        (pushed("nobody-knows", 4, png, T0 + 4), S.FRAME_STATUS_REJECTED, "UNKNOWN_CAMERA"),
        (pushed("", 5, png, T0 + 5), S.FRAME_STATUS_REJECTED, "MISSING_CAMERA_ID"),
        (pushed("idle-cam", 6, png, T0 + 6), S.FRAME_STATUS_DROPPED_NO_DEPLOYMENT, "NO_DEPLOYMENT"),
        (
            pushed("cam-1", 7, b"\x89PNG" + bytes(60_000), T0 + 7),
            S.FRAME_STATUS_REJECTED,
            "IMAGE_TOO_LARGE",
        ),
        (pushed("cam-1", 8, png, T0 + 0.5), S.FRAME_STATUS_REJECTED, "OUT_OF_ORDER"),
        (pushed("cam-1", 9, frame_png(2), T0 + 9), S.FRAME_STATUS_PROCESSED, ""),
    ]
    results = await run_frames(ingest, [frame for frame, _, _ in cases])
    got = [(r.sequence, r.status, r.error.reason) for r in results]
    assert got == [(f.sequence, status, reason) for f, status, reason in cases]
    for r in results:
        if r.error.reason:
            assert r.error.message and r.error.code != 0
    assert analyzer.calls == 2  # only the two good frames reached Triton
    stats = {s.camera_id: s for s in ingest.stats()}
    assert set(stats) == {"cam-1", "idle-cam"}  # nothing kept for unknown cameras
    assert stats["cam-1"].frames_rejected == 4 and stats["cam-1"].frames_processed == 2
    assert stats["idle-cam"].frames_dropped_no_deployment == 1


async def test_no_deployment_means_nothing_else_happens() -> None:
    resolver = FakeResolver({"cam-1": active(end_epoch=time.time() - 1)})  # ended
    ingest, analyzer, matcher, _ = make(resolver=resolver)
    results = await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 5)}, 5))
    assert {r.status for r in results} == {S.FRAME_STATUS_DROPPED_NO_DEPLOYMENT}
    assert analyzer.calls == 0 and matcher.probes == []
    assert ingest.stats("cam-1")[0].frames_dropped_no_deployment == 5


async def test_watchlist_down_fails_closed() -> None:
    ingest, analyzer, _, resolver = make()
    resolver.down = True
    (result,) = await run_frames(ingest, [pushed("cam-1", 1, frame_png(1), T0)])
    assert result.status == S.FRAME_STATUS_FAILED
    assert result.error.reason == "DEPLOYMENT_UNKNOWN" and analyzer.calls == 0
    resolver.down = False
    (result,) = await run_frames(ingest, [pushed("cam-1", 2, frame_png(2), T0 + 1)])
    assert result.status == S.FRAME_STATUS_PROCESSED


async def test_triton_errors_are_per_frame() -> None:
    from lfr.common.errors import InvalidArgument

    ingest, analyzer, _, _ = make()
    bad, down, good = frame_png(1), frame_png(2), frame_png(3)
    analyzer.errors[bad] = InvalidArgument("cannot decode", reason="BAD_IMAGE")
    analyzer.errors[down] = Unavailable("triton unavailable")
    frames = [pushed("cam-1", i, img, T0 + i) for i, img in enumerate([bad, down, good])]
    results = await run_frames(ingest, frames)
    assert [(r.status, r.error.reason) for r in results] == [
        (S.FRAME_STATUS_REJECTED, "BAD_IMAGE"),
        (S.FRAME_STATUS_FAILED, "UNAVAILABLE"),
        (S.FRAME_STATUS_PROCESSED, ""),
    ]
    stats = ingest.stats("cam-1")[0]
    assert (stats.frames_rejected, stats.frames_failed, stats.frames_processed) == (1, 1, 1)


async def test_match_down_fails_the_frame_and_the_shot_is_retried() -> None:
    matcher = FakeMatcher(fail_next=2)
    ingest, analyzer, _, _ = make(matcher=matcher)
    results = await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 4)}, 4))
    assert [r.status for r in results] == [
        S.FRAME_STATUS_FAILED,
        S.FRAME_STATUS_FAILED,
        S.FRAME_STATUS_PROCESSED,
        S.FRAME_STATUS_PROCESSED,
    ]
    assert results[0].error.reason == "UNAVAILABLE" and results[0].faces_found == 1
    assert [r.probes_sent for r in results] == [0, 0, 1, 0]
    stats = ingest.stats("cam-1")[0]
    assert (stats.probes, stats.probes_failed) == (1, 2)


async def test_refused_probes_are_counted_and_not_retried() -> None:
    ingest, analyzer, matcher, _ = make(matcher=FakeMatcher(refuse=True))
    results = await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 4)}, 4))
    assert all(r.status == S.FRAME_STATUS_PROCESSED for r in results)
    assert len(matcher.probes) == 1
    stats = ingest.stats("cam-1")[0]
    assert (stats.probes, stats.probes_failed) == (0, 1)


async def test_a_pulled_camera_refuses_pushed_frames() -> None:
    ingest, _, _, _ = make()
    ingest.camera("cam-1").pulled = True
    (result,) = await run_frames(ingest, [pushed("cam-1", 1, frame_png(1), T0)])
    assert result.status == S.FRAME_STATUS_REJECTED
    assert result.error.reason == "CAMERA_HAS_SOURCE"


async def test_too_many_cameras() -> None:
    ingest, _, _, _ = make(max_cameras=2)
    results = await run_frames(ingest, [pushed(f"cam-{i}", i, frame_png(i), T0) for i in (1, 2, 3)])
    assert [r.error.reason for r in results] == ["", "", "TOO_MANY_CAMERAS"]


# --- sampling and backpressure -----------------------------------------------------------------


async def test_sampling_to_the_target_fps() -> None:
    ingest, analyzer, _, _ = make(target_fps=5)
    frames = [pushed("cam-1", i, frame_png(i), T0 + i * 0.04) for i in range(25)]  # 25 fps
    results = await run_frames(ingest, frames)
    kept = [r.sequence for r in results if r.status == S.FRAME_STATUS_PROCESSED]
    assert kept == [0, 5, 10, 15, 20]
    assert analyzer.calls == 5
    assert ingest.stats("cam-1")[0].frames_skipped_sampling == 20


async def test_newest_frame_wins_and_results_stay_in_order() -> None:
    analyzer = FakeAnalyzer(delay_s=0.05)
    ingest, _, _, _ = make(analyzer=analyzer, queue_size=2)
    futures = []
    for i in range(40):  # 200 frames/s into a pipeline that takes 20
        futures.append(await ingest.submit(pushed("cam-1", i, frame_png(i), T0 + i * 0.005)))
        await asyncio.sleep(0.005)
    results = [await f for f in futures]
    statuses = [r.status for r in results]
    processed = [r.sequence for r in results if r.status == S.FRAME_STATUS_PROCESSED]
    assert set(statuses) == {S.FRAME_STATUS_PROCESSED, S.FRAME_STATUS_DROPPED_BACKPRESSURE}
    assert processed[0] == 0 and processed[-2:] == [38, 39]  # the newest frames made it
    assert len(processed) <= 40 * 0.005 / 0.05 + 3  # capacity, plus the queue at the end
    stats = ingest.stats("cam-1")[0]
    assert stats.frames_dropped_backpressure == 40 - len(processed)
    assert stats.frames_in == 40
    dropped = [r for r in results if r.status == S.FRAME_STATUS_DROPPED_BACKPRESSURE]
    assert max(r.latency_ms for r in dropped) < 500  # answered when pushed out, not after


async def test_cameras_share_the_analyze_slots() -> None:
    analyzer = FakeAnalyzer(delay_s=0.03)
    ingest, _, _, _ = make(analyzer=analyzer, max_concurrent_analyze=2)
    futures = []
    for i in range(5):
        for cam in ("cam-1", "cam-2", "cam-3"):
            futures.append(await ingest.submit(pushed(cam, i, frame_png(i), T0 + i)))
    await asyncio.gather(*futures)
    assert analyzer.max_concurrent == 2


# --- forgetting --------------------------------------------------------------------------------


async def test_frames_chips_and_embeddings_are_released() -> None:
    analyzer = FakeAnalyzer(fresh=True)
    frame_refs: list[Any] = []

    def watch(image: Any) -> None:
        import weakref

        if isinstance(image, np.ndarray):
            frame_refs.append(weakref.ref(image))

    analyzer.on_image = watch
    ingest, _, matcher, _ = make(analyzer=analyzer, track_ttl_s=0.2)
    frames = []
    for i, box in enumerate(walk((0, 0), (5, 0), 3)):
        rgb = np.full((48, 64, 3), i, np.uint8)
        analyzer.scenes[rgb.tobytes()] = [face(box, person(1), seed=i)]
        raw = ingest_pb2.RawImage(width=64, height=48, rgb=rgb.tobytes())
        frames.append(ingest_pb2.Frame(camera_id="cam-1", sequence=i, raw=raw))
        frames[-1].capture_time.FromNanoseconds(int((T0 + i * 0.1) * 1e9))
    results = await run_frames(ingest, frames)
    assert results[0].probes_sent == 1 and len(frame_refs) == 3
    gc.collect()
    assert all(ref() is None for ref in frame_refs), "a frame outlived its processing"
    chips = analyzer.handed_out[1::2]
    assert all(ref() is None for ref in chips), "a chip outlived the match decision"
    await asyncio.sleep(0.5)  # the camera went quiet: the track ends
    gc.collect()
    assert ingest.cameras["cam-1"].tracker.tracks == {}
    assert all(ref() is None for ref in analyzer.handed_out), "face data outlived its track"
    assert len(matcher.probes) == 1


async def test_a_track_that_ends_unprobed_is_probed_when_the_camera_goes_quiet() -> None:
    ingest, analyzer, matcher, _ = make(best_shot_window_s=5.0, track_ttl_s=0.3)
    results = await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 3)}, 3))
    assert sum(r.probes_sent for r in results) == 0
    await asyncio.sleep(0.5)
    assert [t for _, t, _ in matcher.probes] == [1]
    assert ingest.stats("cam-1")[0].probes == 1


async def test_close_answers_waiting_frames() -> None:
    analyzer = FakeAnalyzer(delay_s=1.0)
    ingest, _, _, _ = make(analyzer=analyzer)
    futures = []
    for i in range(3):  # one in Triton, two waiting
        futures.append(await ingest.submit(pushed("cam-1", i, frame_png(i), T0 + i)))
        await asyncio.sleep(0.01)
    await ingest.close()
    results = [await asyncio.wait_for(f, 1) for f in futures]
    assert {r.status for r in results} == {S.FRAME_STATUS_FAILED}
    assert {r.error.reason for r in results} == {"SHUTTING_DOWN"}


# --- deployment cache --------------------------------------------------------------------------


async def test_cached_resolver() -> None:
    now = [0.0]
    inner = FakeResolver({"cam-1": active(), "off": None})
    inner.calls = 0
    cache = CachedResolver(inner, 2.0, clock=lambda: now[0])
    assert await cache.resolve("cam-1") == ActiveDeployment("dep-1")
    assert await cache.resolve("cam-1") is not None and inner.calls == 1
    assert await cache.resolve("off") is None
    for _ in range(2):
        with pytest.raises(NotFound):
            await cache.resolve("ghost")
    assert inner.calls == 3  # the unknown camera's answer is cached too
    now[0] = 2.5
    await cache.resolve("cam-1")
    assert inner.calls == 4
    inner.down = True
    now[0] = 5.0
    with pytest.raises(Unavailable):
        await cache.resolve("cam-1")
    inner.down = False
    assert await cache.resolve("cam-1") is not None  # failures are not cached


async def test_cached_resolver_shares_one_call_between_concurrent_misses() -> None:
    class Slow(FakeResolver):
        async def resolve(self, camera_id: str) -> ActiveDeployment | None:
            await asyncio.sleep(0.02)
            return await super().resolve(camera_id)

    inner = Slow({"cam-1": active()})
    cache = CachedResolver(inner, 1.0)
    await asyncio.gather(*(cache.resolve("cam-1") for _ in range(10)))
    assert inner.calls == 1


async def test_cached_resolver_stays_bounded() -> None:
    inner = FakeResolver({f"c{i}": active() for i in range(50)})
    cache = CachedResolver(inner, 60.0, max_entries=10)
    for i in range(50):
        await cache.resolve(f"c{i}")
    assert len(cache._cache) <= 10


# --- audit counts ------------------------------------------------------------------------------


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, str]]] = []
        self.down = False

    async def record(self, action: str, actor: str, details: dict[str, str]) -> None:
        if self.down:
            raise Unavailable("alert is down")
        self.records.append((action, actor, details))


async def test_faces_seen_counts_go_to_the_audit_log_as_numbers_only() -> None:
    ingest, analyzer, _, _ = make()
    sink = RecordingSink()
    reporter = FacesSeenReporter(ingest, sink, interval_s=60)
    await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 3)}, 3))
    sink.down = True
    assert await reporter.report() == 0
    sink.down = False
    assert await reporter.report() == 1  # carried over, not lost
    ((action, actor, details),) = sink.records
    assert action == "faces.seen" and actor == "lfr-ingest"
    assert details == {
        "camera_id": "cam-1",
        "faces_seen": "3",
        "frames_processed": "3",
        "period_s": "60",
    }
    assert await reporter.report() == 0  # nothing new
    await run_frames(ingest, [pushed("cam-1", 9, analyzer.register(frame_png(99), []), T0 + 10)])
    assert await reporter.report() == 1
    assert sink.records[-1][2]["faces_seen"] == "0"
    assert sink.records[-1][2]["frames_processed"] == "1"


async def test_tracks_ending_after_the_deployment_ended_are_dropped_not_probed() -> None:
    ingest, analyzer, matcher, resolver = make(best_shot_window_s=5.0, track_ttl_s=0.3)
    results = await run_frames(ingest, scene(analyzer, {1: walk((0, 0), (5, 0), 3)}, 3))
    assert sum(r.probes_sent for r in results) == 0
    resolver.cameras["cam-1"] = None  # the deployment stops while the camera is quiet
    await asyncio.sleep(0.6)
    assert matcher.probes == [] and ingest.cameras["cam-1"].tracker.tracks == {}
