"""The harness driver against in-process fakes of the three services it talks to (gRPC on port 0).

The fakes follow the contracts (protos/lfr/v1) and know the ground truth: fake ingest raises an
alert for each enrolled person's pass and one false alert, the way the real suite would.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import cv2
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from lfr.common import timeutil
from lfr.common.errors import Unavailable
from lfr.v1 import (
    alert_pb2,
    alert_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    watchlist_pb2,
    watchlist_pb2_grpc,
)
from lfr_cli.synth.driver import DriveOptions, Endpoints, RunEvents, SynthDriver
from lfr_cli.synth.harness import Harness, operator, prepare
from lfr_cli.synth.photos import load_sample_identities
from lfr_cli.synth.record import AlertLog
from lfr_cli.synth.report import compute_report
from lfr_cli.synth.scene import StreamConfig, walk_past
from lfr_cli.synth.truth import GroundTruth

ENROLLED = ("astronaut", "grace_hopper")


class FakeWatchlist(watchlist_pb2_grpc.WatchlistServiceServicer):
    def __init__(self) -> None:
        self.enrolled: dict[str, str] = {}
        self.removed: list[str] = []
        self.deployments: dict[str, watchlist_pb2.Deployment] = {}
        self.original_photos: dict[str, bytes] = {}
        self.refuse: str = ""  #: when set, every enrolment fails with this reason

    async def CreateWatchlist(self, request, context):  # type: ignore[no-untyped-def]
        return watchlist_pb2.Watchlist(watchlist_id="wl-1", name=request.name)

    async def Enrol(self, request, context):  # type: ignore[no-untyped-def]
        subject = request.governance.subject_ref
        assert request.governance.expires_at.seconds > time.time()
        if self.refuse:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "refused",
                trailing_metadata=(("lfr-reason", self.refuse),),
            )
        if subject == "astronaut" and request.images[0] == self.original_photos["astronaut"]:
            # The real photo shows a second "face" (a flag patch): the driver retries a crop.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "image 0 holds 2 faces",
                trailing_metadata=(("lfr-reason", "MULTIPLE_FACES"),),
            )
        entry_id = f"entry-{subject}"
        self.enrolled[entry_id] = subject
        return watchlist_pb2.Entry(
            entry_id=entry_id,
            watchlist_id=request.watchlist_id,
            governance=request.governance,
            image_count=1,
        )

    async def CreateDeployment(self, request, context):  # type: ignore[no-untyped-def]
        dep = watchlist_pb2.Deployment(
            deployment_id="dep-1",
            camera_ids=request.camera_ids,
            watchlist_id=request.watchlist_id,
            threshold=request.threshold or 0.8,
            state=watchlist_pb2.DEPLOYMENT_STATE_CREATED,
        )
        self.deployments[dep.deployment_id] = dep
        return dep

    async def StartDeployment(self, request, context):  # type: ignore[no-untyped-def]
        dep = self.deployments[request.deployment_id]
        dep.state = watchlist_pb2.DEPLOYMENT_STATE_ACTIVE
        return dep

    async def StopDeployment(self, request, context):  # type: ignore[no-untyped-def]
        dep = self.deployments[request.deployment_id]
        dep.state = watchlist_pb2.DEPLOYMENT_STATE_ENDED
        return dep

    async def RemoveEntry(self, request, context):  # type: ignore[no-untyped-def]
        self.removed.append(request.entry_id)
        return watchlist_pb2.RemoveEntryResponse(entry_id=request.entry_id)


class FakeAlerts(alert_pb2_grpc.AlertServiceServicer):
    """Keeps alerts in a list; the first subscription is cut off after one alert
    (RESOURCE_EXHAUSTED) so the driver has to resume from its cursor."""

    def __init__(self) -> None:
        self.alerts: list[alert_pb2.Alert] = []
        self.changed = asyncio.Condition()
        self.subscriptions = 0
        self.acks: list[str] = []
        self.decisions: dict[str, int] = {}

    async def raise_alert(self, event: alert_pb2.MatchEvent) -> str:
        async with self.changed:
            n = len(self.alerts) + 1
            alert = alert_pb2.Alert(
                alert_id=f"alert-{n}",
                cursor=str(n),
                event=event,
                state=alert_pb2.ALERT_STATE_PENDING,
            )
            self.alerts.append(alert)
            self.changed.notify_all()
        return alert.alert_id

    def _more_than(self, count: int) -> bool:
        return len(self.alerts) > count

    async def Subscribe(self, request, context):  # type: ignore[no-untyped-def]
        self.subscriptions += 1
        first = self.subscriptions == 1
        position = 0 if request.resume_cursor in ("", "0") else int(request.resume_cursor)
        sent = 0
        while True:
            async with self.changed:
                await self.changed.wait_for(partial(self._more_than, position))
                pending = self.alerts[position:]
            for alert in pending:
                position += 1
                if request.filter.deployment_ids and (
                    alert.event.deployment_id not in request.filter.deployment_ids
                ):
                    continue
                yield alert
                sent += 1
                if first and sent == 1:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too slow")

    async def Ack(self, request, context):  # type: ignore[no-untyped-def]
        self.acks.append(request.alert_id)
        return alert_pb2.AckResponse()

    async def Adjudicate(self, request, context):  # type: ignore[no-untyped-def]
        if request.alert_id in self.decisions:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "already adjudicated")
        self.decisions[request.alert_id] = request.decision
        alert = next(a for a in self.alerts if a.alert_id == request.alert_id)
        return alert


class FakeIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Alerts once per pass of an enrolled person (at its middle frame) and once, falsely, for
    the cameraman as Hopper; pull sources are read with OpenCV."""

    def __init__(self, truth: GroundTruth, alerts: FakeAlerts) -> None:
        self.truth = truth
        self.alerts = alerts
        self.frames_in = 0
        self.sources: dict[str, ingest_pb2.Source] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def _decide(self, camera: str, frame: int, capture: Timestamp) -> list[str]:
        raised = []
        for face in self.truth.frames[camera][frame]:
            info = self.truth.passes[face.pass_id]
            if frame != (info.start_frame + info.end_frame) // 2:
                continue
            subject = {"cameraman": "grace_hopper"}.get(face.identity, face.identity)
            if subject not in ENROLLED:
                continue
            event = alert_pb2.MatchEvent(
                event_id=f"ev-{face.pass_id}",
                deployment_id="dep-1",
                camera_id=camera,
                entry_id=f"entry-{subject}",
                subject_ref=subject,
                score=0.9,
                capture_time=capture,
                box=common_pb2.BoundingBox(
                    x1=face.box[0], y1=face.box[1], x2=face.box[2], y2=face.box[3]
                ),
            )
            raised.append(await self.alerts.raise_alert(event))
        return raised

    async def StreamFrames(self, request_iterator, context):  # type: ignore[no-untyped-def]
        frame_of = {}
        async for frame in request_iterator:
            self.frames_in += 1
            index = frame.sequence - 1
            frame_of[frame.sequence] = index
            assert frame.HasField("capture_time") and frame.encoded[:2] == b"\xff\xd8"
            raised = await self._decide(frame.camera_id, index, frame.capture_time)
            yield ingest_pb2.FrameResult(
                camera_id=frame.camera_id,
                sequence=frame.sequence,
                status=ingest_pb2.FRAME_STATUS_PROCESSED,
                faces_found=1,
                latency_ms=12.5,
                alert_ids=raised,
            )

    async def _pull(self, source: ingest_pb2.Source) -> None:
        capture = cv2.VideoCapture(source.uri)
        start = time.time()
        source.state = ingest_pb2.SOURCE_STATE_RUNNING
        index = 0
        while True:
            ok, _image = capture.read()
            if not ok:
                break
            self.frames_in += 1
            await self._decide(
                source.camera_id, index, timeutil.to_timestamp(start + index / source.target_fps)
            )
            index += 1
            source.frames_read = index
            await asyncio.sleep(0)
        source.state = ingest_pb2.SOURCE_STATE_FINISHED

    async def AddSource(self, request, context):  # type: ignore[no-untyped-def]
        source = ingest_pb2.Source(
            camera_id=request.camera_id,
            uri=request.uri,
            target_fps=request.target_fps,
            state=ingest_pb2.SOURCE_STATE_CONNECTING,
        )
        self.sources[request.camera_id] = source
        self.tasks.append(asyncio.create_task(self._pull(source)))
        return source

    async def ListSources(self, request, context):  # type: ignore[no-untyped-def]
        return ingest_pb2.ListSourcesResponse(sources=list(self.sources.values()))

    async def RemoveSource(self, request, context):  # type: ignore[no-untyped-def]
        source = self.sources.pop(request.camera_id)
        source.state = ingest_pb2.SOURCE_STATE_STOPPED
        return ingest_pb2.RemoveSourceResponse(source=source)

    async def GetStats(self, request, context):  # type: ignore[no-untyped-def]
        cams = [
            ingest_pb2.CameraStats(
                camera_id=cam,
                frames_in=self.frames_in,
                frames_processed=self.frames_in,
                faces_detected=40,
            )
            for cam in self.truth.camera_ids
        ]
        return ingest_pb2.IngestStats(cameras=cams)


@pytest.fixture(scope="module")
def harness() -> Harness:
    config = StreamConfig(
        width=320,
        height=180,
        fps=10.0,
        face_px=(40, 60),
        camera_prefix="fake-cam-",
        seed=4,
        lead_in_s=0.2,
        tail_s=0.3,
    )
    identities = load_sample_identities()
    scenario = walk_past(
        ["grace_hopper", "cameraman", "astronaut", "grace_hopper"], config, pass_s=1.0, gap_s=0.3
    )
    base = prepare(identities, config, enrol_names=list(ENROLLED))
    from lfr_cli.synth.scene import Renderer

    renderer = Renderer(scenario, identities)
    return Harness(
        identities, base.enrol, scenario, renderer, GroundTruth.from_scenario(scenario, renderer)
    )


@pytest.fixture
async def suite(
    harness: Harness,
) -> AsyncIterator[tuple[Endpoints, FakeWatchlist, FakeAlerts, FakeIngest]]:
    watchlist, alerts = FakeWatchlist(), FakeAlerts()  # type: ignore[abstract]
    for name, photos in harness.enrol.items():
        watchlist.original_photos[name] = photos[0].encoded()
    ingest = FakeIngest(harness.truth, alerts)
    server = aio.server()
    watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(watchlist, server)
    alert_pb2_grpc.add_AlertServiceServicer_to_server(alerts, server)
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(ingest, server)
    health = health_aio.HealthServicer()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    addr = f"127.0.0.1:{port}"
    try:
        yield Endpoints(ingest=addr, watchlist=addr, alert=addr), watchlist, alerts, ingest
    finally:
        for task in ingest.tasks:
            task.cancel()
        await server.stop(0)


def _driver(
    harness: Harness, endpoints: Endpoints, options: DriveOptions, seen: list[AlertLog]
) -> SynthDriver:
    driver = SynthDriver(
        endpoints, harness.renderer, harness.enrol, options, events=RunEvents(alert=seen.append)
    )
    driver.decide = operator(harness.truth, lambda: driver.record)
    return driver


async def test_push_run_enrols_streams_collects_adjudicates_and_cleans_up(
    harness: Harness, suite: tuple[Endpoints, FakeWatchlist, FakeAlerts, FakeIngest]
) -> None:
    endpoints, watchlist, alerts, ingest = suite
    seen: list[AlertLog] = []
    options = DriveOptions(realtime=False, settle_s=2.0)
    record = await _driver(harness, endpoints, options, seen).run()

    assert record.enrolled == {"astronaut": "entry-astronaut", "grace_hopper": "entry-grace_hopper"}
    assert record.enrol_failures == {}  # the astronaut went in on the second try, as a crop
    assert record.deployment_id == "dep-1" and record.threshold == pytest.approx(0.8)
    assert len(record.frames) == harness.scenario.frames_per_camera == ingest.frames_in
    assert all(f.status == "PROCESSED" for f in record.frames)
    # 3 true alerts (two Hopper passes, one astronaut) + the cameraman taken for Hopper,
    # each once although the subscription was cut off and resumed.
    assert alerts.subscriptions >= 2
    assert sorted(a.alert_id for a in record.alerts) == [f"alert-{n}" for n in range(1, 5)]
    assert [a.alert_id for a in seen] == [a.alert_id for a in record.alerts]
    assert set(alerts.acks) == {a.alert_id for a in record.alerts}
    assert sorted(alerts.decisions.values()) == [
        alert_pb2.DECISION_CONFIRM,
        alert_pb2.DECISION_CONFIRM,
        alert_pb2.DECISION_CONFIRM,
        alert_pb2.DECISION_REJECT,
    ]
    assert watchlist.deployments["dep-1"].state == watchlist_pb2.DEPLOYMENT_STATE_ENDED
    assert sorted(watchlist.removed) == ["entry-astronaut", "entry-grace_hopper"]
    assert record.stats["fake-cam-1"]["faces_detected"] == 0  # a delta: 40 before and after

    report = compute_report(harness.truth, record)
    assert (report.passes_enrolled, report.passes_identified) == (3, 3)
    assert (report.true_alerts, report.false_alerts, report.duplicate_alerts) == (3, 1, 0)
    p50 = report.alert_latency_ms["p50"]
    assert report.alert_latency_ms["count"] == 4 and p50 is not None and p50 >= 0
    assert {a.decision for a in record.alerts} == {"CONFIRM", "REJECT"}


async def test_push_paces_frames_at_the_fps(
    harness: Harness, suite: tuple[Endpoints, FakeWatchlist, FakeAlerts, FakeIngest]
) -> None:
    endpoints, *_ = suite
    record = await _driver(
        harness, endpoints, DriveOptions(settle_s=0.5, adjudicate=False), []
    ).run()
    captures = [f.capture_ns for f in record.frames]
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(captures)]
    # 10 fps: 0.1 s apart (a frame delayed by a busy loop is followed by a catch-up one).
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(0.1, abs=0.03)
    assert (captures[-1] - captures[0]) / 1e9 == pytest.approx((len(captures) - 1) / 10.0, abs=0.25)


async def test_pull_run_writes_videos_and_waits_for_the_sources(
    harness: Harness,
    suite: tuple[Endpoints, FakeWatchlist, FakeAlerts, FakeIngest],
    tmp_path: Path,
) -> None:
    endpoints, _w, _a, _i = suite
    options = DriveOptions(mode="pull", video_dir=tmp_path / "videos", settle_s=1.0)
    record = await _driver(harness, endpoints, options, []).run()
    assert (tmp_path / "videos" / "fake-cam-1.avi").is_file()
    source = record.sources["fake-cam-1"]
    assert source["frames_read"] == harness.scenario.frames_per_camera
    assert source["state"] in ("FINISHED", "STOPPED")
    assert record.frames == [] and len(record.alerts) == 4
    report = compute_report(harness.truth, record)
    assert (report.passes_identified, report.false_alerts) == (3, 1)


async def test_pull_run_without_a_video_dir_leaves_no_videos_behind(
    harness: Harness,
    suite: tuple[Endpoints, FakeWatchlist, FakeAlerts, FakeIngest],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoints, _w, _a, _i = suite
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    record = await _driver(harness, endpoints, DriveOptions(mode="pull", settle_s=1.0), []).run()
    assert record.sources["fake-cam-1"]["frames_read"] == harness.scenario.frames_per_camera
    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


async def test_no_one_enrolled_stops_the_run_early(
    harness: Harness, suite: tuple[Endpoints, FakeWatchlist, FakeAlerts, FakeIngest]
) -> None:
    endpoints, watchlist, _a, ingest = suite
    only_astronaut = {"astronaut": harness.enrol["astronaut"]}
    watchlist.refuse = "NO_FACE"
    driver = SynthDriver(endpoints, harness.renderer, only_astronaut, DriveOptions())
    with pytest.raises(Exception, match="no one could be enrolled"):
        await driver.run()
    assert driver.record.enrol_failures == {"astronaut": "NO_FACE"}
    assert ingest.frames_in == 0


async def test_a_suite_that_is_not_there_is_one_clear_error(harness: Harness) -> None:
    server = aio.server()  # listens, but serves nothing: no health service either
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    addr = f"127.0.0.1:{port}"
    try:
        driver = SynthDriver(Endpoints(addr, addr, addr), harness.renderer, harness.enrol)
        with pytest.raises(Unavailable, match=r"lfr suite is not ready \(watchlist at"):
            await driver.run()
        assert driver.record.watchlist_id == ""  # nothing was attempted
    finally:
        await server.stop(0)
