"""Drives a synthetic scenario through a running lfr suite, over the public gRPC APIs only.

1. creates a watch list and enrols the chosen people (WatchlistService.Enrol);
2. authorises and starts a deployment for the cameras (CreateDeployment, StartDeployment);
3. subscribes to the deployment's alerts (AlertService.Subscribe, resuming after a cut-off) and,
   as a simulated operator, adjudicates each one (optional);
4. streams the cameras at their fps — pushed over IngestService.StreamFrames, or written as
   video files and pulled by ingest (AddSource) — and records every frame result;
5. waits for the alerts still in flight, reads ingest's counters, stops the deployment and
   removes the entries it enrolled.

The outcome is a :class:`~lfr_cli.synth.record.RunRecord`; nothing is judged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Literal, cast

import cv2
import grpc
from grpc import aio

from lfr.common import timeutil
from lfr.common.channels import open_channel
from lfr.common.errors import DeadlineExceeded, LfrError, Unavailable, from_rpc_error
from lfr.inference.types import UInt8Array
from lfr.v1 import (
    alert_pb2,
    alert_pb2_grpc,
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    watchlist_pb2,
    watchlist_pb2_grpc,
)
from lfr_cli.health import HealthProbe
from lfr_cli.synth.photos import FacePhoto
from lfr_cli.synth.record import STAT_FIELDS, AlertLog, FrameLog, Mode, RunRecord
from lfr_cli.synth.scene import Renderer, make_sprite
from lfr_cli.synth.video import write_videos

__all__ = [
    "DriveOptions",
    "Endpoints",
    "RunEvents",
    "SynthDriver",
    "encode_frame",
    "rpc_reason",
]

Encoding = Literal["jpeg", "png", "raw"]
#: The simulated operator: (Decision value, reason) for an alert, or None to leave it pending.
Decider = Callable[[AlertLog], tuple[int, str] | None]

#: Enrolment errors for which a tighter crop of the same photo is tried (other faces at the
#: edge of a news photo, or a face too small in a big photo).
_RETRY_WITH_CROP: Final = ("MULTIPLE_FACES",)
_FINAL_SOURCE_STATES: Final = frozenset(
    {
        ingest_pb2.SOURCE_STATE_FINISHED,
        ingest_pb2.SOURCE_STATE_FAILED,
        ingest_pb2.SOURCE_STATE_STOPPED,
    }
)


def rpc_reason(err: grpc.RpcError) -> str:
    """The ``lfr-reason`` trailing metadata of a failed call ("" when absent)."""
    try:
        metadata: Any = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    except Exception:
        return ""
    for key, value in metadata or ():
        if key == "lfr-reason":
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


@dataclass(frozen=True)
class Endpoints:
    ingest: str
    watchlist: str
    alert: str


@dataclass(frozen=True)
class DriveOptions:
    mode: Mode = "push"
    encoding: Encoding = "jpeg"
    jpeg_quality: int = 90
    threshold: float = 0.0  #: 0 = the deployment's calibrated default
    realtime: bool = True  #: pace frames at the scenario's fps (False: as fast as accepted)
    settle_s: float = 5.0  #: longest wait for alerts still in flight after the last frame
    adjudicate: bool = True  #: act as the operator: confirm true alerts, reject false ones
    cleanup: bool = True  #: remove the enrolled entries at the end
    video_dir: Path | None = None  #: pull mode: where the videos go (default: a temp folder)
    rpc_timeout_s: float = 30.0
    actor: str = "lfr-synth"
    location: str = "synthetic test site"
    purpose: str = "synthetic evaluation run"
    watchlist_name: str = ""


@dataclass
class RunEvents:
    """Hooks for progress output; every one optional."""

    progress: Callable[[str], None] = field(default=lambda _m: None)
    alert: Callable[[AlertLog], None] = field(default=lambda _a: None)
    frame: Callable[[FrameLog], None] = field(default=lambda _f: None)
    adjudicated: Callable[[AlertLog, alert_pb2.Alert], None] = field(default=lambda _a, _r: None)


def encode_frame(image: UInt8Array, encoding: Encoding = "jpeg", quality: int = 90) -> bytes:
    """An RGB frame as the bytes the driver pushes (deterministic: same pixels, same bytes)."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if encoding == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise LfrError(f"{encoding} encoding of a frame failed")
    return bytes(buf)


def _crop_bytes(photo: FacePhoto) -> bytes:
    sprite = make_sprite(photo)
    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(sprite.rgb.astype("uint8"), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 95],
    )
    if not ok:
        raise LfrError("JPEG encoding of an enrolment crop failed")
    return bytes(buf)


class SynthDriver:
    """One run of one scenario against one suite. Use inside an event loop:
    ``record = await SynthDriver(endpoints, renderer, enrol, options).run()``."""

    def __init__(
        self,
        endpoints: Endpoints,
        renderer: Renderer,
        enrol: Mapping[str, Sequence[FacePhoto]],
        options: DriveOptions | None = None,
        *,
        events: RunEvents | None = None,
        decide: Decider | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.renderer = renderer
        self.scenario = renderer.scenario
        self.enrol_photos = dict(enrol)
        self.options = options or DriveOptions()
        self.events = events or RunEvents()
        self.decide = decide
        cfg = self.scenario.config
        self.record = RunRecord(mode=self.options.mode, fps=cfg.fps, camera_ids=cfg.camera_ids())
        self._alerts_seen: dict[str, AlertLog] = {}
        self._alert_arrived = asyncio.Event()
        self._adjudications: set[asyncio.Task[None]] = set()
        self._channels: list[aio.Channel] = []
        self._frame_alert_ids: list[list[str]] = []

    # -- plumbing ----------------------------------------------------------------------------

    def _open(self, address: str) -> aio.Channel:
        channel = open_channel(address)
        self._channels.append(channel)
        return channel

    async def _close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        self._channels.clear()

    def _note(self, message: str) -> None:
        self.record.notes.append(message)
        self.events.progress(f"note: {message}")

    # -- the run -----------------------------------------------------------------------------

    async def run(self) -> RunRecord:
        opts = self.options
        self.watchlist = watchlist_pb2_grpc.WatchlistServiceStub(
            self._open(self.endpoints.watchlist)
        )
        self.alerts = alert_pb2_grpc.AlertServiceStub(self._open(self.endpoints.alert))
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self._open(self.endpoints.ingest))
        stop_alerts = asyncio.Event()
        subscriber: asyncio.Task[None] | None = None
        await self._preflight()
        try:
            await self._create_watchlist()
            await self._enrol_all()
            await self._start_deployment()
            subscriber = asyncio.create_task(self._subscribe(stop_alerts))
            before = await self._stats()
            if opts.mode == "push":
                await self._push_all()
            else:
                await self._pull_all()
            await self._settle()
            after = await self._stats()
            self._stats_delta(before, after)
        except grpc.RpcError as err:  # a failed call of the run itself: one clear line
            raise from_rpc_error(err, what="synthetic run") from None
        finally:
            stop_alerts.set()
            if subscriber is not None:
                subscriber.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await subscriber
            if self._adjudications:
                await asyncio.gather(*self._adjudications, return_exceptions=True)
            await self._teardown()
            await self._close()
        return self.record

    async def _preflight(self) -> None:
        """Every service this run calls answers its health check, or a clear error."""
        problems = []
        for name, addr in (
            ("watchlist", self.endpoints.watchlist),
            ("alert", self.endpoints.alert),
            ("ingest", self.endpoints.ingest),
        ):
            ok, detail = await asyncio.to_thread(HealthProbe("grpc", addr).check, 3.0)
            if not ok:
                problems.append(f"{name} at {addr}: {detail}")
        if problems:
            raise Unavailable(
                "the lfr suite is not ready (" + "; ".join(problems) + "); start it with `lfr up`"
            )

    async def _create_watchlist(self) -> None:
        opts = self.options
        stamp = time.strftime("%Y%m%d-%H%M%S")
        reply = await self.watchlist.CreateWatchlist(
            watchlist_pb2.CreateWatchlistRequest(
                name=opts.watchlist_name or f"lfr synth {stamp}",
                description="synthetic evaluation watch list (lfr synth)",
                created_by=opts.actor,
            ),
            timeout=opts.rpc_timeout_s,
        )
        self.record.watchlist_id = reply.watchlist_id
        self.events.progress(f"watch list {reply.watchlist_id} created")

    def _governance(self, identity: str, photo: FacePhoto) -> watchlist_pb2.Governance:
        now = timeutil.now()
        return watchlist_pb2.Governance(
            category=common_pb2.CATEGORY_MISSING_AT_RISK,
            legal_basis_ref="SYNTHETIC-EVALUATION",
            image_source=f"lfr synth: {photo.source}",
            image_date=timeutil.to_timestamp(now),
            approver=self.options.actor,
            expires_at=timeutil.to_timestamp(now + timedelta(days=1)),
            subject_ref=identity,
        )

    async def _enrol_all(self) -> None:
        for identity, photos in sorted(self.enrol_photos.items()):
            if not photos:
                continue
            try:
                entry = await self._enrol(identity, photos, [p.encoded() for p in photos])
            except grpc.RpcError as err:
                reason = rpc_reason(err)
                if reason not in _RETRY_WITH_CROP:
                    self._enrol_failed(identity, err, reason)
                    continue
                try:
                    entry = await self._enrol(identity, photos, [_crop_bytes(p) for p in photos])
                except grpc.RpcError as err2:
                    self._enrol_failed(identity, err2, rpc_reason(err2))
                    continue
            self.record.enrolled[identity] = entry.entry_id
        self.events.progress(
            f"enrolled {len(self.record.enrolled)} of {len(self.enrol_photos)} people"
        )
        if not self.record.enrolled and self.enrol_photos:
            raise LfrError(
                "no one could be enrolled: "
                + "; ".join(f"{k}: {v}" for k, v in self.record.enrol_failures.items())
            )

    async def _enrol(
        self, identity: str, photos: Sequence[FacePhoto], images: list[bytes]
    ) -> watchlist_pb2.Entry:
        return await self.watchlist.Enrol(
            watchlist_pb2.EnrolRequest(
                watchlist_id=self.record.watchlist_id,
                images=images,
                governance=self._governance(identity, photos[0]),
            ),
            timeout=self.options.rpc_timeout_s + 10.0 * len(images),
        )

    def _enrol_failed(self, identity: str, err: grpc.RpcError, reason: str) -> None:
        detail = err.details() if hasattr(err, "details") else str(err)
        self.record.enrol_failures[identity] = reason or str(err.code())
        self._note(f"{identity} not enrolled ({reason or err.code()}): {detail}")

    async def _start_deployment(self) -> None:
        opts = self.options
        now = timeutil.now()
        # The window covers the run with room to spare; the deployment is stopped at the end.
        end = now + timedelta(seconds=max(600.0, 4 * self.scenario.duration_s + 300.0))
        created = await self.watchlist.CreateDeployment(
            watchlist_pb2.CreateDeploymentRequest(
                authorising_officer=opts.actor,
                purpose=opts.purpose,
                location=opts.location,
                camera_ids=self.record.camera_ids,
                watchlist_id=self.record.watchlist_id,
                threshold=opts.threshold,
                start_time=timeutil.to_timestamp(now - timedelta(seconds=1)),
                end_time=timeutil.to_timestamp(end),
            ),
            timeout=opts.rpc_timeout_s,
        )
        started = await self.watchlist.StartDeployment(
            watchlist_pb2.StartDeploymentRequest(
                deployment_id=created.deployment_id, requested_by=opts.actor
            ),
            timeout=opts.rpc_timeout_s,
        )
        self.record.deployment_id = started.deployment_id
        self.record.threshold = float(started.threshold)
        self.events.progress(
            f"deployment {started.deployment_id} active for "
            f"{', '.join(self.record.camera_ids)} at threshold {started.threshold:.3f}"
        )

    async def _teardown(self) -> None:
        opts = self.options
        if self.record.deployment_id:
            try:
                await self.watchlist.StopDeployment(
                    watchlist_pb2.StopDeploymentRequest(
                        deployment_id=self.record.deployment_id,
                        requested_by=opts.actor,
                        reason="synthetic run finished",
                    ),
                    timeout=opts.rpc_timeout_s,
                )
            except grpc.RpcError as err:
                self._note(f"stopping the deployment failed: {err.code()} {err.details()}")
        if opts.cleanup:
            for identity, entry_id in self.record.enrolled.items():
                try:
                    await self.watchlist.RemoveEntry(
                        watchlist_pb2.RemoveEntryRequest(
                            watchlist_id=self.record.watchlist_id,
                            entry_id=entry_id,
                            requested_by=opts.actor,
                            reason="synthetic run finished",
                        ),
                        timeout=opts.rpc_timeout_s,
                    )
                except grpc.RpcError as err:
                    self._note(f"removing {identity}'s entry failed: {err.code()}")

    # -- alerts ------------------------------------------------------------------------------

    async def _subscribe(self, stop: asyncio.Event) -> None:
        """Receive the deployment's alerts until stopped; resume after a cut-off."""
        subscriber_id = f"lfr-synth-{uuid.uuid4().hex[:8]}"
        cursor = "0"  # the deployment is new: everything of it is this run's
        backoff = 0.2
        while not stop.is_set():
            request = alert_pb2.SubscribeRequest(
                subscriber_id=subscriber_id,
                filter=alert_pb2.AlertFilter(deployment_ids=[self.record.deployment_id]),
                resume_cursor=cursor,
            )
            call = self.alerts.Subscribe(request)
            try:
                async for alert in call:
                    cursor = alert.cursor or cursor
                    backoff = 0.2
                    self._on_alert(alert, time.time_ns())
                    with contextlib.suppress(grpc.RpcError):
                        await self.alerts.Ack(
                            alert_pb2.AckRequest(
                                subscriber_id=subscriber_id, alert_id=alert.alert_id
                            ),
                            timeout=self.options.rpc_timeout_s,
                        )
            except grpc.RpcError as err:
                if err.code() not in (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.CANCELLED,
                ):
                    self._note(f"alert subscription ended: {err.code()} {err.details()}")
                    return
            finally:
                call.cancel()
            await asyncio.sleep(backoff)
            backoff = min(2.0, backoff * 2)

    def _on_alert(self, alert: alert_pb2.Alert, received_ns: int) -> None:
        if alert.alert_id in self._alerts_seen:
            return  # a resumed stream may repeat the last one
        event = alert.event
        entry_identity = self.record.identity_of_entry()
        log = AlertLog(
            alert_id=alert.alert_id,
            camera_id=event.camera_id,
            entry_id=event.entry_id,
            subject_ref=event.subject_ref,
            identity=entry_identity.get(event.entry_id, event.subject_ref),
            score=float(event.score),
            capture_ns=event.capture_time.ToNanoseconds(),
            received_ns=received_ns,
            box=(event.box.x1, event.box.y1, event.box.x2, event.box.y2),
            track_id=int(event.track_id),
            repeat_count=int(alert.repeat_count),
        )
        self._alerts_seen[alert.alert_id] = log
        self.record.alerts.append(log)
        self._alert_arrived.set()
        self.events.alert(log)
        if self.options.adjudicate and self.decide is not None:
            verdict = self.decide(log)
            if verdict is not None:
                task = asyncio.create_task(self._adjudicate(log, *verdict))
                self._adjudications.add(task)
                task.add_done_callback(self._adjudications.discard)

    async def _adjudicate(self, log: AlertLog, decision: int, reason: str) -> None:
        try:
            reply = await self.alerts.Adjudicate(
                alert_pb2.AdjudicateRequest(
                    alert_id=log.alert_id,
                    officer_id=f"{self.options.actor}-operator",
                    decision=decision,  # type: ignore[arg-type]
                    reason=reason,
                ),
                timeout=self.options.rpc_timeout_s,
            )
        except grpc.RpcError as err:
            self._note(f"adjudicating {log.alert_id} failed: {err.code()} {err.details()}")
            return
        recorded = cast(alert_pb2.Decision.ValueType, reply.adjudication.decision or decision)
        log.decision = alert_pb2.Decision.Name(recorded).removeprefix("DECISION_")
        self.events.adjudicated(log, reply)

    async def _settle(self) -> None:
        """Wait for the alerts ingest reported (frame results name them) to arrive, and a
        little longer for any still in flight; at most ``settle_s``."""
        expected = (
            {a for f in self._frame_alert_ids for a in f} if self.options.mode == "push" else set()
        )
        deadline = time.monotonic() + self.options.settle_s
        quiet_for = min(1.5, self.options.settle_s)
        while time.monotonic() < deadline:
            missing = expected - set(self._alerts_seen)
            self._alert_arrived.clear()
            if not missing:
                try:
                    await asyncio.wait_for(self._alert_arrived.wait(), timeout=quiet_for)
                except TimeoutError:
                    return
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._alert_arrived.wait(), timeout=max(0.05, deadline - time.monotonic())
                )
        missing = expected - set(self._alerts_seen)
        if missing:
            self._note(
                f"{len(missing)} alert(s) named in frame results never reached the "
                f"subscriber within {self.options.settle_s:g} s"
            )

    # -- ingest: push ------------------------------------------------------------------------

    async def _push_all(self) -> None:
        opts = self.options
        cams = self.record.camera_ids
        payloads: dict[str, list[bytes]] = {}
        if opts.encoding != "raw":
            # Encoded up front, so rendering does not compete with the suite while it streams.
            self.events.progress(
                f"rendering {self.scenario.frames_per_camera} frames x {len(cams)} camera(s)"
            )
            for cam in cams:
                payloads[cam] = [
                    encode_frame(self.renderer.render(cam, f), opts.encoding, opts.jpeg_quality)
                    for f in range(self.scenario.frames_per_camera)
                ]
        self.events.progress(
            f"streaming {len(cams)} camera(s) at {self.scenario.config.fps:g} fps for "
            f"{self.scenario.duration_s:.1f} s (push)"
        )
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.2
        self.record.started_ns = time.time_ns() + 200_000_000
        await asyncio.gather(*(self._push_camera(cam, t0, payloads.get(cam)) for cam in cams))
        ends = [f.result_ns for f in self.record.frames if f.result_ns]
        self.record.ended_ns = max(ends) if ends else time.time_ns()

    async def _push_camera(self, cam: str, t0: float, payloads: list[bytes] | None) -> None:
        opts = self.options
        fps = self.scenario.config.fps
        loop = asyncio.get_running_loop()
        logs: dict[int, FrameLog] = {}
        n_frames = self.scenario.frames_per_camera

        async def frames() -> AsyncIterator[ingest_pb2.Frame]:
            for frame in range(n_frames):
                if opts.realtime:
                    await asyncio.sleep(max(0.0, t0 + frame / fps - loop.time()))
                request = ingest_pb2.Frame(camera_id=cam, sequence=frame + 1)
                if payloads is not None:
                    request.encoded = payloads[frame]
                else:
                    image = self.renderer.render(cam, frame)
                    request.raw.CopyFrom(
                        ingest_pb2.RawImage(
                            width=image.shape[1], height=image.shape[0], rgb=image.tobytes()
                        )
                    )
                capture = time.time_ns()
                request.capture_time.FromNanoseconds(capture)
                log = FrameLog(cam, frame, frame + 1, capture)
                logs[frame + 1] = log
                self.record.frames.append(log)
                yield request

        deadline = self.scenario.duration_s * 4 + 120.0
        call = self.ingest.StreamFrames(frames(), timeout=deadline)
        try:
            async for result in call:
                log = logs.get(result.sequence)
                if log is None:
                    continue
                log.status = ingest_pb2.FrameStatus.Name(result.status).removeprefix(
                    "FRAME_STATUS_"
                )
                log.faces_found = result.faces_found
                log.probes_sent = result.probes_sent
                log.matches = result.matches
                log.latency_ms = result.latency_ms
                log.error_reason = result.error.reason if result.HasField("error") else ""
                log.result_ns = time.time_ns()
                if result.alert_ids:
                    self._frame_alert_ids.append(list(result.alert_ids))
                self.events.frame(log)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(
                    f"camera {cam}: ingest did not finish the stream within {deadline:.0f} s"
                ) from None
            raise from_rpc_error(err, what=f"ingest StreamFrames ({cam})") from None

    # -- ingest: pull ------------------------------------------------------------------------

    async def _pull_all(self) -> None:
        if self.options.video_dir is not None:
            await self._pull_from(self.options.video_dir)
            return
        # Nobody asked to keep the videos (rendered faces): they live only as long as the pull.
        with tempfile.TemporaryDirectory(prefix="lfr-synth-videos-") as tmp:
            await self._pull_from(Path(tmp))

    async def _pull_from(self, video_dir: Path) -> None:
        opts = self.options
        self.events.progress(f"writing videos to {video_dir}")
        paths = await asyncio.to_thread(write_videos, self.renderer, video_dir)
        uris = {cam: str(path.absolute()) for cam, path in paths.items()}
        self.record.started_ns = time.time_ns()
        for cam in paths:
            await self.ingest.AddSource(
                ingest_pb2.AddSourceRequest(
                    camera_id=cam,
                    uri=uris[cam],
                    target_fps=self.scenario.config.fps,
                    loop=False,
                ),
                timeout=opts.rpc_timeout_s,
            )
        self.events.progress(f"ingest is pulling {len(paths)} video file(s)")
        deadline = time.monotonic() + self.scenario.duration_s * 4 + 120.0
        final: dict[str, ingest_pb2.Source] = {}
        while time.monotonic() < deadline:
            listed = await self.ingest.ListSources(
                ingest_pb2.ListSourcesRequest(), timeout=opts.rpc_timeout_s
            )
            ours = {s.camera_id: s for s in listed.sources if s.camera_id in paths}
            final = ours
            done = all(s.state in _FINAL_SOURCE_STATES for s in ours.values())
            if len(ours) == len(paths) and done:
                break
            await asyncio.sleep(0.5)
        else:
            self._note("pull sources did not finish in time")
        self.record.ended_ns = time.time_ns()
        for cam in paths:
            with contextlib.suppress(grpc.RpcError):
                reply = await self.ingest.RemoveSource(
                    ingest_pb2.RemoveSourceRequest(camera_id=cam), timeout=opts.rpc_timeout_s
                )
                final[cam] = reply.source
        for cam, source in final.items():
            self.record.sources[cam] = {
                "state": ingest_pb2.SourceState.Name(source.state).removeprefix("SOURCE_STATE_"),
                "frames_read": int(source.frames_read),
                "reconnects": int(source.reconnects),
                "last_error": source.last_error,
            }

    # -- ingest counters ---------------------------------------------------------------------

    async def _stats(self) -> dict[str, ingest_pb2.CameraStats]:
        try:
            reply = await self.ingest.GetStats(
                ingest_pb2.GetIngestStatsRequest(), timeout=self.options.rpc_timeout_s
            )
        except grpc.RpcError as err:
            self._note(f"ingest GetStats failed: {err.code()}")
            return {}
        return {c.camera_id: c for c in reply.cameras if c.camera_id in self.record.camera_ids}

    def _stats_delta(
        self,
        before: Mapping[str, ingest_pb2.CameraStats],
        after: Mapping[str, ingest_pb2.CameraStats],
    ) -> None:
        for cam, stats in after.items():
            prior = before.get(cam)
            self.record.stats[cam] = {
                name: int(getattr(stats, name)) - (int(getattr(prior, name)) if prior else 0)
                for name in STAT_FIELDS
            }
            lat = stats.latency
            self.record.ingest_latency_ms[cam] = {
                "count": float(lat.count),
                "p50": lat.p50_ms,
                "p95": lat.p95_ms,
                "p99": lat.p99_ms,
                "max": lat.max_ms,
            }
