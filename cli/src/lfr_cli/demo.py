"""``lfr demo``: the whole suite, end to end, in a few minutes on a laptop CPU.

Starts the embedded suite (Redis, Triton, the four services) on free ports in a temporary
folder, creates a watch list, enrols Grace Hopper, authorises and starts a deployment for one
camera, streams a clip in which Hopper, the astronaut and the cameraman walk past, prints each
alert as it arrives (score and latency) and adjudicates it as the operator, prints the audit
log's summary (counts only) and stops everything — on Ctrl-C, SIGTERM and errors too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from lfr.common import timeutil
from lfr.common.channels import open_channel
from lfr.v1 import alert_pb2, alert_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from lfr_cli.synth.audit import AuditSummary, fetch_audit, summarise_audit
from lfr_cli.synth.driver import DriveOptions, RunEvents, SynthDriver
from lfr_cli.synth.harness import operator
from lfr_cli.synth.photos import load_sample_identities
from lfr_cli.synth.record import AlertLog, FrameLog, RunRecord
from lfr_cli.synth.report import compute_report
from lfr_cli.synth.scene import Renderer, StreamConfig, walk_past
from lfr_cli.synth.suite import Suite, embedded_suite, terminate_as_interrupt
from lfr_cli.synth.truth import GroundTruth

__all__ = ["add_arguments", "run_demo"]

WALKERS: Final = ("grace_hopper", "astronaut", "cameraman")
ENROLLED: Final = "grace_hopper"
#: faces.seen audit records every few seconds, so the summary has them before the demo ends.
AUDIT_INTERVAL_S: Final = 2.0


def _say(message: str) -> None:
    print(f"[lfr demo] {message}", flush=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, default=3.0, help="camera frame rate (default 3)")
    parser.add_argument(
        "--pass-seconds", type=float, default=4.0, help="time each person takes to walk past"
    )
    parser.add_argument(
        "--home", type=Path, help="state folder to use and keep (default: a temporary one)"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed of the clip")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _say("starting the embedded suite: Redis, Triton and the four lfr services ...")
    with (
        terminate_as_interrupt(),
        embedded_suite(
            _say,
            home=args.home,
            keep_home=args.home is not None,
            service_env={"LFR_INGEST_AUDIT_INTERVAL_S": f"{AUDIT_INTERVAL_S:g}"},
        ) as suite,
    ):
        _say(f"suite up after {time.monotonic() - started:.0f} s")
        code = asyncio.run(_demo(args, suite))
    _say(f"done in {time.monotonic() - started:.0f} s")
    return code


class _Printer:
    """Progress lines while the clip streams, and each alert as it arrives."""

    def __init__(self, frames: int, fps: float) -> None:
        self.frames = frames
        self.every = max(1, round(2 * fps))  # a line every ~2 s of video
        self.done = 0
        self.faces = 0

    def frame(self, log: FrameLog) -> None:
        self.done += 1
        self.faces += log.faces_found
        if self.done % self.every == 0 or self.done == self.frames:
            _say(f"  frames {self.done}/{self.frames} answered, {self.faces} face(s) found")

    def alert(self, alert: AlertLog) -> None:
        _say(
            f"  ALERT {alert.alert_id[:12]}  camera {alert.camera_id}  "
            f"{alert.identity}  score {alert.score:.3f}  latency {alert.latency_ms:.0f} ms"
        )

    def adjudicated(self, alert: AlertLog, reply: alert_pb2.Alert) -> None:
        state = alert_pb2.AlertState.Name(reply.state).removeprefix("ALERT_STATE_").lower()
        _say(f"  operator adjudicated {alert.alert_id[:12]}: {state}")


async def _demo(args: argparse.Namespace, suite: Suite) -> int:
    demo_start = timeutil.now() - timedelta(seconds=1)
    identities = load_sample_identities(WALKERS)
    config = StreamConfig(
        width=640,
        height=360,
        fps=args.fps,
        camera_prefix="demo-cam-",
        face_px=(80.0, 120.0),
        blur_sigma=(0.0, 0.8),
        seed=args.seed,
    )
    scenario = walk_past(WALKERS, config, pass_s=args.pass_seconds, gap_s=1.5)
    renderer = Renderer(scenario, identities)
    truth = GroundTruth.from_scenario(scenario, renderer)
    hopper = next(i for i in identities if i.name == ENROLLED)
    _say(
        f"clip: {', '.join(WALKERS)} walk past camera {scenario.camera_ids[0]} "
        f"({scenario.frames_per_camera} frames, {scenario.duration_s:.0f} s at {args.fps:g} fps); "
        f"watch list: {ENROLLED} only"
    )
    printer = _Printer(scenario.frames_per_camera, args.fps)
    driver = SynthDriver(
        suite.endpoints,
        renderer,
        {ENROLLED: list(hopper.photos)},
        DriveOptions(
            actor="lfr-demo",
            purpose="lfr demo: synthetic clip",
            location="demo street",
            watchlist_name="demo watch list",
            cleanup=False,  # the demo's state folder goes away with it
            settle_s=5.0,
        ),
        events=RunEvents(
            progress=lambda m: _say(m),
            alert=printer.alert,
            frame=printer.frame,
            adjudicated=printer.adjudicated,
        ),
    )
    driver.decide = operator(truth, lambda: driver.record)
    record = await driver.run()
    report = compute_report(truth, record)
    for p in report.passes:
        verdict = f"{len(p.alert_ids)} alert(s)" if p.alert_ids else "no alert"
        who = "on the watch list" if p.enrolled else "not on the watch list"
        _say(f"pass {p.pass_id + 1}: {p.identity} ({who}) -> {verdict}")
    lat = report.alert_latency_ms
    if lat["count"]:
        _say(
            f"alert latency (capture -> alert received): p50 {lat['p50']:.0f} ms, "
            f"max {lat['max']:.0f} ms; frames processed {report.frames_processed}/"
            f"{report.frames_sent}, dropped {report.drops['backpressure']}"
        )
    summary = await _audit_summary(suite, record, demo_start)
    _say("audit log since the demo started (counts only):")
    for line in summary.lines():
        _say(f"  {line}")
    expected_alerts = sum(1 for p in report.passes if p.enrolled)
    ok = (
        report.passes_identified == expected_alerts
        and report.false_alerts == 0
        and report.duplicate_alerts == 0
    )
    _say(
        "result: "
        + (
            f"OK — {ENROLLED} raised {report.true_alerts} alert(s), the others none"
            if ok
            else f"UNEXPECTED — {report.true_alerts} true, {report.false_alerts} false alert(s), "
            f"{report.passes_identified}/{expected_alerts} passes of {ENROLLED} alerted"
        )
    )
    return 0 if ok else 1


async def _audit_summary(suite: Suite, record: RunRecord, since: datetime) -> AuditSummary:
    """The audit log's counts; waits (a few audit periods at most) until ingest's faces-seen
    records account for every face it detected on the demo camera."""
    channels = [open_channel(suite.endpoints.alert), open_channel(suite.endpoints.ingest)]
    alerts = alert_pb2_grpc.AlertServiceStub(channels[0])
    ingest = ingest_pb2_grpc.IngestServiceStub(channels[1])
    try:
        stats = await ingest.GetStats(ingest_pb2.GetIngestStatsRequest(), timeout=10.0)
        detected = sum(c.faces_detected for c in stats.cameras if c.camera_id in record.camera_ids)
        deadline = time.monotonic() + 4 * AUDIT_INTERVAL_S + 5.0
        while True:
            records = await fetch_audit(alerts, since=since)
            summary = summarise_audit(
                records, camera_ids=record.camera_ids, deployment_id=record.deployment_id
            )
            if summary.faces_seen >= detected or time.monotonic() > deadline:
                break
            await asyncio.sleep(AUDIT_INTERVAL_S / 2)
        verified = await alerts.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest(), timeout=30.0)
        if verified.ok:
            _say(f"audit chain verified: {verified.records_checked} records, unbroken")
        else:
            _say(f"audit chain BROKEN at record {verified.first_broken_seq}: {verified.problem}")
        return summary
    finally:
        for channel in channels:
            await channel.close(None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lfr demo")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
