"""Benchmark: the whole suite end to end against a single-process ``face_recognition`` loop.

    .venv/bin/python bench/bench_e2e.py                     # sample photos, ~3 minutes
    .venv/bin/python bench/bench_e2e.py --photos ../shared/datasets/lfw-dev/people --enrol-count 10

Both sides get the same synthetic camera streams (``lfr_cli.synth``: the same JPEG bytes, paced
in real time at the cameras' fps) and the same rule for an alert (a score at or above the
threshold on the lfr score scale — cosine of unit embeddings —, one alert per subject and
camera within a 4 s cool-down). Both raise alerts from the threshold floor up, so the figures
at the operating threshold (default: the calibrated default) and the identification/false-alert
curve above the floor come from one run:

* **lfr** — the embedded suite (Redis, Triton, four services) started here on free ports,
  driven by the harness: frames pushed over ``StreamFrames``, alerts received over
  ``Subscribe``.
* **peer baseline** — one Python process and one loop, the way a small face_recognition app
  watches cameras: take each camera's newest frame (older ones are dropped), decode it,
  ``face_recognition.face_locations`` (dlib HOG, upsample 1, as lfr's ``face_detect``) and
  ``face_encodings`` (the same dlib ResNet with 5-point alignment), compare with the enrolled
  vectors, alert.

Two loads: **light** (every frame can be processed: latency) and **overload** (more frames than
either can process: throughput and drops). The suite is stopped before the baseline runs, so the
two never share the CPU. Prints Markdown tables (and writes JSON + a PNG) for
docs/PERFORMANCE.md. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import face_recognition
import numpy as np
from common import machine

from lfr.common.scores import DEFAULT_THRESHOLD, THRESHOLD_FLOOR
from lfr_cli.synth.driver import DriveOptions, SynthDriver, encode_frame
from lfr_cli.synth.harness import Harness, choose_watchlist, prepare
from lfr_cli.synth.photos import FacePhoto, Identity, load_folder, load_sample_identities
from lfr_cli.synth.plot import plot_report
from lfr_cli.synth.record import AlertLog, FrameLog, RunRecord
from lfr_cli.synth.report import Report, compute_report, format_report
from lfr_cli.synth.scene import StreamConfig
from lfr_cli.synth.suite import Suite, embedded_suite

COOLDOWN_S = 4.0


@dataclass(frozen=True)
class Load:
    name: str
    cameras: int
    fps: float


LOADS = (Load("light", 1, 2.0), Load("overload", 4, 5.0))


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- lfr ------------------------------------------------------------------------------------------


async def run_lfr(suite: Suite, harness: Harness) -> RunRecord:
    driver = SynthDriver(
        suite.endpoints,
        harness.renderer,
        harness.enrol,
        # Deployed at the floor: every threshold above it can be read off the alert scores.
        DriveOptions(settle_s=6.0, adjudicate=False, actor="lfr-bench", threshold=THRESHOLD_FLOOR),
    )
    return await driver.run()


# -- the peer baseline ----------------------------------------------------------------------------


class Baseline:
    """The single-process face_recognition loop."""

    def __init__(self, enrol: dict[str, list[FacePhoto]], threshold: float) -> None:
        self.threshold = threshold
        self.names: list[str] = []
        vectors = []
        for name, photos in sorted(enrol.items()):
            for photo in photos:
                image = photo.image
                locations = face_recognition.face_locations(image, 1)
                if not locations:
                    continue
                largest = max(locations, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
                (vector,) = face_recognition.face_encodings(image, [largest], 1, "small")
                vectors.append(vector / np.linalg.norm(vector))
                self.names.append(name)
        self.gallery = np.stack(vectors).astype(np.float32)

    def run(self, harness: Harness) -> RunRecord:
        scenario = harness.scenario
        cfg = scenario.config
        cams = scenario.camera_ids
        frames = {
            cam: [
                encode_frame(harness.renderer.render(cam, f))
                for f in range(scenario.frames_per_camera)
            ]
            for cam in cams
        }
        record = RunRecord(mode="push", fps=cfg.fps, camera_ids=cams, threshold=self.threshold)
        record.enrolled = {name: name for name in set(self.names)}
        logs: dict[tuple[str, int], FrameLog] = {}
        last_alert: dict[tuple[str, str], float] = {}
        t0_ns = time.time_ns() + 200_000_000
        for cam in cams:
            for f in range(scenario.frames_per_camera):
                log = FrameLog(cam, f, f + 1, t0_ns + round(f / cfg.fps * 1e9))
                logs[(cam, f)] = log
                record.frames.append(log)
        done = {cam: -1 for cam in cams}
        n = scenario.frames_per_camera
        record.started_ns = t0_ns
        turn = 0
        while any(done[c] < n - 1 for c in cams):
            now_ns = time.time_ns()
            available = {c: min(n - 1, math.floor((now_ns - t0_ns) / 1e9 * cfg.fps)) for c in cams}
            ready = [c for c in cams if available[c] > done[c]]
            if not ready:
                nxt = min(t0_ns + (done[c] + 1) / cfg.fps * 1e9 for c in cams if done[c] < n - 1)
                time.sleep(max(0.0, (nxt - time.time_ns()) / 1e9))
                continue
            cam = ready[turn % len(ready)]
            turn += 1
            frame = available[cam]
            for skipped in range(done[cam] + 1, frame):
                logs[(cam, skipped)].status = "DROPPED_BACKPRESSURE"  # the newest frame won
            done[cam] = frame
            log = logs[(cam, frame)]
            image = cv2.cvtColor(
                cv2.imdecode(np.frombuffer(frames[cam][frame], np.uint8), cv2.IMREAD_COLOR),
                cv2.COLOR_BGR2RGB,
            )
            locations = face_recognition.face_locations(image, 1)
            encodings = face_recognition.face_encodings(image, locations, 1, "small")
            decided_ns = time.time_ns()
            log.status, log.faces_found = "PROCESSED", len(locations)
            log.latency_ms = (decided_ns - log.capture_ns) / 1e6
            log.result_ns = decided_ns
            for (top, right, bottom, left), vector in zip(locations, encodings, strict=True):
                scores = self.gallery @ (vector / np.linalg.norm(vector)).astype(np.float32)
                best = int(np.argmax(scores))
                if scores[best] < self.threshold:
                    continue
                name = self.names[best]
                now = decided_ns / 1e9
                if now - last_alert.get((cam, name), -1e9) < COOLDOWN_S:
                    continue
                last_alert[(cam, name)] = now
                record.alerts.append(
                    AlertLog(
                        alert_id=f"baseline-{len(record.alerts) + 1}",
                        camera_id=cam,
                        entry_id=name,
                        subject_ref=name,
                        identity=name,
                        score=float(scores[best]),
                        capture_ns=log.capture_ns,
                        received_ns=decided_ns,
                        box=(float(left), float(top), float(right), float(bottom)),
                    )
                )
        record.ended_ns = max(f.result_ns for f in record.frames if f.result_ns)
        faces = sum(f.faces_found for f in record.frames)
        processed = sum(1 for f in record.frames if f.status == "PROCESSED")
        dropped = sum(1 for f in record.frames if f.status == "DROPPED_BACKPRESSURE")
        record.stats = {
            "all": {
                "faces_detected": faces,
                "frames_processed": processed,
                "frames_dropped_backpressure": dropped,
                "frames_in": len(record.frames),
            }
        }
        return record


# -- the run --------------------------------------------------------------------------------------


def _harness(
    args: argparse.Namespace,
    load: Load,
    identities: list[Identity],
    enrol: list[str],
    strangers: list[Identity],
) -> Harness:
    config = StreamConfig(
        width=args.size[0],
        height=args.size[1],
        fps=load.fps,
        cameras=load.cameras,
        camera_prefix=f"bench-{load.name}-",
        passes_per_identity=args.passes * load.cameras,
        min_repeat_gap_s=COOLDOWN_S + 2.0,
        overlap=0.2,
        seed=args.seed,
    )
    return prepare(
        identities,
        config,
        enrol_names=enrol,
        strangers=strangers,
        max_identities=args.max_identities,
    )


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _ratio(a: float | int | None, b: float | int | None) -> str:
    if a is None or b is None or not b:
        return "-"
    return f"{a / b:.2f}x"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def table(load: Load, lfr: Report, base: Report) -> str:
    rows = [
        ("frames offered", lfr.frames_sent, base.frames_sent, None),
        (
            "frames/s processed",
            f"{lfr.frames_per_s or 0:.2f}",
            f"{base.frames_per_s or 0:.2f}",
            _ratio(lfr.frames_per_s, base.frames_per_s),
        ),
        (
            "frames dropped (newest wins)",
            lfr.drops["backpressure"] + lfr.drops["sampling"] + lfr.drops["no_result"],
            base.drops["backpressure"],
            None,
        ),
        (
            "alert latency p50, ms",
            _ms(lfr.alert_latency_ms["p50"]),
            _ms(base.alert_latency_ms["p50"]),
            _ratio(lfr.alert_latency_ms["p50"], base.alert_latency_ms["p50"]),
        ),
        (
            "alert latency p95, ms",
            _ms(lfr.alert_latency_ms["p95"]),
            _ms(base.alert_latency_ms["p95"]),
            _ratio(lfr.alert_latency_ms["p95"], base.alert_latency_ms["p95"]),
        ),
        (
            "frame latency p50, ms",
            _ms(lfr.frame_latency_ms["p50"]),
            _ms(base.frame_latency_ms["p50"]),
            _ratio(lfr.frame_latency_ms["p50"], base.frame_latency_ms["p50"]),
        ),
        (
            "identification rate (passes)",
            f"{_pct(lfr.identification_rate)} ({lfr.passes_identified}/{lfr.passes_enrolled})",
            f"{_pct(base.identification_rate)} ({base.passes_identified}/{base.passes_enrolled})",
            None,
        ),
        ("false alerts", lfr.false_alerts, base.false_alerts, None),
        ("faces seen", lfr.faces_seen, base.faces_seen, None),
    ]
    head = (
        f"### {load.name}: {load.cameras} camera(s) x {load.fps:g} fps, "
        f"{lfr.passes_total} passes, {lfr.duration_s:.0f} s\n\n"
        "| | lfr (4 services + Triton + Redis) | face_recognition loop | lfr / loop |\n"
        "|---|---:|---:|---:|"
    )
    body = "\n".join(f"| {name} | {a} | {b} | {r or ''} |" for name, a, b, r in rows)
    return head + "\n" + body


async def _lfr_runs(suite: Suite, harnesses: dict[str, Harness]) -> dict[str, RunRecord]:
    records = {}
    for name, harness in harnesses.items():
        _say(f"lfr: {name} load, {harness.scenario.duration_s:.0f} s of video")
        records[name] = await run_lfr(suite, harness)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, help="labelled photo folder (default: samples)")
    parser.add_argument("--strangers", type=Path, help="folder of people never enrolled")
    parser.add_argument(
        "--loads", default="light,overload", help="which loads to run (default light,overload)"
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the suite's services, e.g. LFR_INGEST_BEST_SHOT_WINDOW_S=0",
    )
    parser.add_argument("--enrol-count", type=int, default=None)
    parser.add_argument("--max-identities", type=int, default=None)
    parser.add_argument("--passes", type=int, default=2, help="passes per person per camera")
    parser.add_argument(
        "--size", type=lambda t: tuple(int(v) for v in t.split("x")), default=(640, 360)
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="operating threshold"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/out/e2e"))
    parser.add_argument("--plot", type=Path, default=None, help="also copy the plot here")
    args = parser.parse_args(argv)

    if args.photos:
        identities = load_folder(args.photos)
        enrol = choose_watchlist(identities, count=args.enrol_count or max(1, len(identities) // 4))
    else:
        identities = load_sample_identities()
        enrol = ["grace_hopper"]
    strangers = load_folder(args.strangers) if args.strangers else []
    loads = [load for load in LOADS if load.name in args.loads.split(",")]
    harnesses = {load.name: _harness(args, load, identities, enrol, strangers) for load in loads}
    service_env = {"LFR_ALERT_COOLDOWN_S": f"{COOLDOWN_S:g}"}
    service_env.update(kv.split("=", 1) for kv in args.service_env)
    if args.service_env:
        _say(f"service settings: {service_env}")
    started = time.time()
    with embedded_suite(_say, service_env=service_env) as suite:
        records = asyncio.run(_lfr_runs(suite, harnesses))
    floor = next(iter(records.values())).threshold or THRESHOLD_FLOOR
    _say(f"baseline: face_recognition loop, alerts from {floor:.3f}")
    baseline = Baseline(next(iter(harnesses.values())).enrol, floor)
    base_records = {}
    for load in loads:
        _say(f"baseline: {load.name} load")
        base_records[load.name] = baseline.run(harnesses[load.name])

    print(f"Machine: {machine()}\n")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "started": started,
        "service_env": service_env,
        "argv": sys.argv[1:],
        "loads": {},
    }
    for load in loads:
        truth = harnesses[load.name].truth
        lfr_report = compute_report(truth, records[load.name], threshold=args.threshold)
        base_report = compute_report(truth, base_records[load.name], threshold=args.threshold)
        print(table(load, lfr_report, base_report) + "\n")
        _say("lfr report:\n" + format_report(lfr_report, sweep_rows=0))
        results["loads"][load.name] = {
            "lfr": lfr_report.summary_json(),
            "baseline": base_report.summary_json(),
        }
        plot = plot_report(
            lfr_report,
            args.out / f"e2e-{load.name}.png",
            title=f"lfr vs face_recognition loop, {load.name} load",
            others={"face_recognition loop": base_report},
        )
        if args.plot and load.name == "light":
            args.plot.parent.mkdir(parents=True, exist_ok=True)
            args.plot.write_bytes(plot.read_bytes())
    (args.out / "e2e.json").write_text(json.dumps(results, indent=1) + "\n")
    _say(f"wrote {args.out}/e2e.json and the plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
