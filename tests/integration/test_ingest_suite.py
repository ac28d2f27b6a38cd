"""Ingest in the real suite: real Triton models, real Redis, and the real alert, watchlist and
match services, each a process started by the test run (ingest too).

Scenes are composed from registry-shipped photos: Grace Hopper (enrolled) and the astronaut (a
stranger) pasted onto a backdrop and moved across frames.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lfr.v1 import ingest_pb2, ingest_pb2_grpc
from lfr_cli.sample_photos import GRACE_HOPPER
from lfr_cli.testing import RedisInstance, ServiceInstance, TritonInstance
from tests.conftest import ServiceStarter, free_port
from tests.integration.ingest_support import (
    RtspServer,
    Suite,
    astronaut_head,
    compose,
    deploy,
    files_under,
    frame,
    hopper_small,
    ingest_channel,
    jpeg,
    lockstep,
    rss_bytes,
    rtsp_unavailable,
    start_suite,
    stop_deployment,
    wait_for,
)

pytestmark = pytest.mark.integration
S = ingest_pb2


@pytest.fixture(scope="module")
def suite(
    redis_server: RedisInstance,
    triton_server: TritonInstance,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Suite]:
    if not redis_server.running():
        redis_server.restart()
    root = tmp_path_factory.mktemp("ingest-suite")
    starter = ServiceStarter(root / "services")
    try:
        yield start_suite(starter, redis_server, triton_server, root)
    finally:
        starter.close()


def stats(suite: Suite, camera_id: str) -> ingest_pb2.CameraStats:
    with ingest_channel(suite) as channel:
        reply = ingest_pb2_grpc.IngestServiceStub(channel).GetStats(
            S.GetIngestStatsRequest(camera_id=camera_id), timeout=10
        )
    return reply.cameras[0]


def test_a_pushed_stream_yields_one_probe_per_person_per_track(suite: Suite) -> None:
    cam = "push-cam-1"
    deployment, _ = deploy(suite.watchlist.addr, [cam], {"hopper": GRACE_HOPPER.read_bytes()})
    hop, astro = hopper_small(), astronaut_head()
    t0 = time.time()
    frames = []
    for i in range(10):  # both walk across the scene, 5 frames/s
        image = compose([(hop, 20 + 35 * i, 40), (astro, 390 - 30 * i, 250)])
        frames.append(frame(cam, i, jpeg(image), t0 + 0.2 * i))
    for k in range(4):  # 2.2 s later (longer than a track lives unseen) Hopper is back alone
        image = compose([(hop, 300 + 20 * k, 60)])
        frames.append(frame(cam, 10 + k, jpeg(image), t0 + 4.0 + 0.2 * k))

    watched = [suite.ingest_tmp, suite.starter.log_dir]
    before = files_under(*watched)
    with ingest_channel(suite) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        results = lockstep(stub, frames, timeout_s=180)
    stop_deployment(suite.watchlist.addr, deployment)

    assert [r.sequence for r in results] == list(range(14))
    assert all(r.status == S.FRAME_STATUS_PROCESSED for r in results), [
        (r.sequence, S.FrameStatus.Name(r.status), r.error.reason) for r in results
    ]
    assert [r.faces_found for r in results] == [2] * 10 + [1] * 4
    track_ids = {f.track_id for r in results for f in r.faces}
    assert len(track_ids) == 3  # Hopper, the astronaut, Hopper again
    probes = sum(r.probes_sent for r in results)
    assert probes == 3  # one per person per track, not one per frame (14 frames, 24 faces)
    assert sum(r.matches for r in results) == 2  # Hopper's two tracks; never the stranger
    assert any(r.alert_ids for r in results)
    matched_tracks = {f.track_id for r in results for f in r.faces if f.matched}
    assert len(matched_tracks) == 2

    cam_stats = stats(suite, cam)
    assert (cam_stats.frames_processed, cam_stats.faces_detected) == (14, 24)
    assert (cam_stats.tracks, cam_stats.probes, cam_stats.matches) == (3, 3, 2)
    assert cam_stats.latency.count == 14 and cam_stats.latency.p50_ms > 0

    # Forgetting: no file appeared in the service's working or temp folders, and its log holds
    # nothing shaped like a crop or an embedding.
    after = files_under(*watched)
    assert sorted(set(after) - set(before)) == []
    log = suite.ingest.log_text()
    assert "\\xff\\xd8" not in log and "JFIF" not in log
    assert re.search(r"(-?\d+\.\d+\s*,\s*){8,}", log) is None


def test_bad_frames_get_clear_errors_and_the_stream_goes_on(suite: Suite) -> None:
    cam = "push-cam-bad"
    deployment, _ = deploy(suite.watchlist.addr, [cam], {})
    good = jpeg(compose([(hopper_small(), 100, 60)]))
    corrupt = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 8
    sof = good.index(b"\xff\xc0")
    scrambled = good[: sof + 19] + np.random.default_rng(3).bytes(4000)  # header, then noise
    noise = np.random.default_rng(4).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
    ok, big = cv2.imencode(".png", noise)  # ~6.8 MB; ingest's limit here is 4 MiB
    assert ok and len(big) > 4 * 1024 * 1024
    t0 = time.time()
    frames = [
        frame(cam, 0, good, t0),
        frame(cam, 1, corrupt, t0 + 0.1),
        frame(cam, 2, scrambled, t0 + 0.2),
        frame(cam, 3, b"", t0 + 0.3),
        frame("nobody-deployed-this-cam", 4, good, t0 + 0.4),
        frame(cam, 5, bytes(big), t0 + 0.5),
        frame(cam, 6, good, t0 - 5),  # goes back in time
        frame(cam, 7, good, t0 + 0.7),
    ]
    with ingest_channel(suite) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        results = lockstep(stub, frames, timeout_s=120)
    stop_deployment(suite.watchlist.addr, deployment)
    got = [(r.sequence, S.FrameStatus.Name(r.status), r.error.reason) for r in results]
    assert got == [
        (0, "FRAME_STATUS_PROCESSED", ""),
        (1, "FRAME_STATUS_REJECTED", "BAD_IMAGE"),  # ingest reads the header: not a JPEG
        (2, "FRAME_STATUS_REJECTED", "BAD_IMAGE"),  # header fine, Triton cannot decode it
        (3, "FRAME_STATUS_REJECTED", "EMPTY_IMAGE"),
        (4, "FRAME_STATUS_DROPPED_NO_DEPLOYMENT", "NO_DEPLOYMENT"),
        (5, "FRAME_STATUS_REJECTED", "IMAGE_TOO_LARGE"),
        (6, "FRAME_STATUS_REJECTED", "OUT_OF_ORDER"),
        (7, "FRAME_STATUS_PROCESSED", ""),
    ]
    for r in results[1:7]:
        assert r.error.message and r.error.code in (3, 9), r  # INVALID_ARGUMENT, FAILED_PRECOND.
    assert results[0].faces_found == results[7].faces_found == 1


def test_four_times_overload_stays_bounded(suite: Suite) -> None:
    """Push at 4x what the pipeline can process: memory stays flat, drops are counted and the
    frames that are processed come back within a bounded time."""
    cam = "push-cam-load"
    deployment, _ = deploy(suite.watchlist.addr, [cam], {})
    images = [jpeg(compose([(hopper_small(), 40 + 25 * (i % 12), 60)])) for i in range(12)]

    # Capacity: one frame at a time, measured here, on this machine, now.
    with ingest_channel(suite) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        t0 = time.time()
        warm = lockstep(stub, [frame(cam, i, images[i], t0 + i) for i in range(4)], 60)
    per_frame_s = float(np.median([r.latency_ms for r in warm])) / 1000
    interval = per_frame_s / 4
    n = max(40, int(10.0 / interval))  # ~10 s of pushing
    pid = suite.ingest.pid
    assert pid is not None
    rss: list[int] = []
    pushing = threading.Event()
    pushing.set()

    def sample() -> None:
        while pushing.is_set():
            rss.append(rss_bytes(pid))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)

    def paced() -> Iterator[ingest_pb2.Frame]:
        start = time.time()
        for i in range(n):
            delay = start + i * interval - time.time()
            if delay > 0:
                time.sleep(delay)
            yield frame(cam, 100 + i, images[i % 12], t0 + 10 + i * interval)

    sampler.start()
    with ingest_channel(suite) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        results = list(stub.StreamFrames(paced(), timeout=120))
    pushing.clear()
    sampler.join()
    stop_deployment(suite.watchlist.addr, deployment)

    print(
        f"overload: {n} frames at {1 / interval:.1f}/s, capacity {1 / per_frame_s:.1f}/s, "
        f"rss MiB {[r // 2**20 for r in rss]}"
    )
    assert len(results) == n and [r.sequence for r in results] == [100 + i for i in range(n)]
    processed = [r for r in results if r.status == S.FRAME_STATUS_PROCESSED]
    dropped = [r for r in results if r.status == S.FRAME_STATUS_DROPPED_BACKPRESSURE]
    assert len(processed) + len(dropped) == n
    assert len(dropped) >= n / 2, (len(processed), len(dropped), per_frame_s)
    # A processed frame waited at most for the one in Triton and the queue (2) ahead of it.
    p95 = float(np.percentile([r.latency_ms for r in processed], 95)) / 1000
    print(f"processed {len(processed)}, dropped {len(dropped)}, p95 {p95:.2f} s")
    assert p95 < 5 * per_frame_s + 1.0, (p95, per_frame_s)
    cam_stats = stats(suite, cam)
    assert cam_stats.frames_dropped_backpressure == len(dropped)
    # Memory: after the first seconds, the process does not grow with the frames pushed.
    settled = rss[len(rss) // 4 :]
    assert max(settled) - min(settled) < 40 * 1024 * 1024, [r // 2**20 for r in rss]


def test_a_video_file_is_pulled_to_the_end(suite: Suite, tmp_path: Path) -> None:
    cam = "file-cam-1"
    deployment, _ = deploy(suite.watchlist.addr, [cam], {"hopper": GRACE_HOPPER.read_bytes()})
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (640, 480))
    assert writer.isOpened()
    hop = hopper_small()
    for i in range(20):  # 2 s at 10 frames/s: Hopper walks across
        writer.write(cv2.cvtColor(compose([(hop, 20 + 15 * i, 60)]), cv2.COLOR_RGB2BGR))
    writer.release()
    with ingest_channel(suite) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        added = stub.AddSource(
            S.AddSourceRequest(camera_id=cam, uri=str(video), target_fps=5), timeout=10
        )
        assert added.state == S.SOURCE_STATE_CONNECTING

        def finished() -> ingest_pb2.Source | None:
            (source,) = stub.ListSources(S.ListSourcesRequest(), timeout=10).sources
            return source if source.state == S.SOURCE_STATE_FINISHED else None

        source = wait_for(finished, 120, "the file source to finish")
        assert source.frames_read == 20 and source.reconnects == 0
        cam_stats = wait_for(
            lambda: (s := stats(suite, cam)).frames_processed == 10 and s, 60, "10 frames"
        )
        removed = stub.RemoveSource(S.RemoveSourceRequest(camera_id=cam), timeout=10)
        assert removed.source.state == S.SOURCE_STATE_FINISHED
    stop_deployment(suite.watchlist.addr, deployment)
    # 20 frames at 10 fps sampled to 5 fps: 10 processed; a file waits, so nothing dropped.
    assert cam_stats.frames_in == 20 and cam_stats.frames_skipped_sampling == 10
    assert cam_stats.frames_dropped_backpressure == 0
    assert cam_stats.faces_detected == 10 and cam_stats.tracks == 1
    assert cam_stats.probes == 1 and cam_stats.matches == 1


def test_health_waits_for_triton_and_match(
    suite: Suite, tmp_path: Path, triton_server: TritonInstance
) -> None:
    match_port = free_port()
    starter = ServiceStarter(tmp_path / "services")
    try:
        ingest = starter(
            "ingest",
            {
                "TRITON_URL": triton_server.url,
                "MATCH_ADDR": f"127.0.0.1:{match_port}",
                "WATCHLIST_ADDR": suite.watchlist.addr,
                "ALERT_ADDR": "",
                "HEALTH_INTERVAL_S": "0.5",
            },
            wait=False,
        )
        with grpc.insecure_channel(ingest.addr) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            def status() -> int:
                try:
                    reply = health.Check(
                        health_pb2.HealthCheckRequest(service="lfr.v1.IngestService"), timeout=2
                    )
                except grpc.RpcError:
                    return -1
                return int(reply.status)

            wait_for(lambda: status() >= 0, 60, "ingest to listen")
            time.sleep(1.5)
            assert status() == health_pb2.HealthCheckResponse.NOT_SERVING
            match = ServiceInstance(
                "match",
                {
                    "REDIS_URL": suite.redis.url,
                    "WATCHLIST_ADDR": suite.watchlist.addr,
                    "ALERT_ADDR": suite.alert.addr,
                },
                log_dir=tmp_path / "services",
                port=match_port,
            )
            starter.started.append(match)
            match.start()
            wait_for(lambda: status() == health_pb2.HealthCheckResponse.SERVING, 30, "SERVING")
    finally:
        starter.close()


def test_an_rtsp_source_reconnects_on_its_own(suite: Suite, tmp_path: Path) -> None:
    """A real RTSP server (GStreamer, from Debian's packages) on loopback is read, stopped and
    started again; ingest reconnects without being told."""
    why_not = rtsp_unavailable()
    if why_not is not None:
        pytest.skip(why_not)
    cam = "rtsp-cam-1"
    deployment, _ = deploy(suite.watchlist.addr, [cam], {})
    image = tmp_path / "scene.jpg"
    image.write_bytes(jpeg(compose([(hopper_small(), 200, 60)])))
    server = RtspServer(image, fps=5).start()
    try:
        with ingest_channel(suite) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            stub.AddSource(
                S.AddSourceRequest(camera_id=cam, uri=server.url, target_fps=2), timeout=10
            )

            def source() -> ingest_pb2.Source:
                (found,) = stub.ListSources(S.ListSourcesRequest(), timeout=10).sources
                return found

            wait_for(
                lambda: (s := source()).state == S.SOURCE_STATE_RUNNING and s.frames_read >= 10,
                60,
                "the RTSP source to run",
            )
            wait_for(lambda: stats(suite, cam).frames_processed >= 2, 60, "frames processed")

            server.stop()
            wait_for(lambda: source().state == S.SOURCE_STATE_RECONNECTING, 30, "ingest to notice")
            time.sleep(1.5)  # a few refused attempts, backing off
            broken = source()
            assert broken.state == S.SOURCE_STATE_RECONNECTING and broken.last_error
            processed_before = stats(suite, cam).frames_processed

            server.start()  # same port, same path
            back = wait_for(
                lambda: (
                    (s := source()).state == S.SOURCE_STATE_RUNNING
                    and s.frames_read >= broken.frames_read + 10
                    and s
                ),
                60,
                "ingest to reconnect on its own",
            )
            assert back.reconnects == 1
            wait_for(
                lambda: stats(suite, cam).frames_processed > processed_before, 30, "new frames"
            )
            removed = stub.RemoveSource(S.RemoveSourceRequest(camera_id=cam), timeout=10)
            assert removed.source.state == S.SOURCE_STATE_STOPPED
    finally:
        server.stop()
        stop_deployment(suite.watchlist.addr, deployment)
    cam_stats = stats(suite, cam)
    assert cam_stats.faces_detected >= 3 and cam_stats.tracks >= 1
