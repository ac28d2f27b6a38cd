"""``lfr synth run`` (drive a scenario through the suite and report) and ``lfr synth render``
(write the streams as video files with their ground truth)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lfr.common.errors import ConfigError, LfrError, Unavailable
from lfr.common.scores import DEFAULT_THRESHOLD, THRESHOLD_FLOOR
from lfr_cli.synth.driver import DriveOptions, RunEvents, SynthDriver
from lfr_cli.synth.harness import Harness, choose_watchlist, operator, prepare
from lfr_cli.synth.photos import Identity, load_folder, load_sample_identities, locate_faces
from lfr_cli.synth.record import AlertLog
from lfr_cli.synth.report import compute_report, format_report
from lfr_cli.synth.scene import StreamConfig
from lfr_cli.synth.suite import Suite, embedded_suite, running_suite, terminate_as_interrupt
from lfr_cli.synth.video import write_ground_truth, write_videos

__all__ = ["add_arguments", "run_render", "run_synth"]


def _say(message: str) -> None:
    print(f"lfr synth: {message}", file=sys.stderr, flush=True)


def _pair(text: str, what: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"{what}: give one number or two as LOW,HIGH")
    return parts[0], parts[1]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("size: give WIDTHxHEIGHT, e.g. 640x360") from None
    return w, h


def _stream_args(parser: argparse.ArgumentParser) -> None:
    people = parser.add_argument_group("people")
    people.add_argument(
        "--photos",
        type=Path,
        help="folder of labelled photos, <identity>/<photo>.jpg (default: the sample photos)",
    )
    people.add_argument(
        "--strangers",
        type=Path,
        help="folder of people never enrolled (<identity>.jpg or <identity>/<photo>.jpg)",
    )
    people.add_argument(
        "--enrol",
        action="append",
        metavar="NAME",
        help="enrol this identity (repeatable; default: grace_hopper for the sample photos)",
    )
    people.add_argument(
        "--enrol-count",
        type=int,
        metavar="K",
        help="enrol K identities drawn with the seed (default: a quarter of a photo folder)",
    )
    people.add_argument(
        "--enrol-photos",
        type=int,
        default=1,
        metavar="K",
        help="photos per enrolled person used for enrolment; the rest walk past (default 1)",
    )
    people.add_argument("--max-identities", type=int, metavar="N", help="use at most N people")
    people.add_argument(
        "--locate",
        choices=("auto", "detector", "centre"),
        default="auto",
        help="find faces in folder photos with the detector (via Triton) or assume them "
        "centred; auto: the detector when Triton answers (default)",
    )
    stream = parser.add_argument_group("streams")
    stream.add_argument("--cameras", type=int, default=1, help="number of cameras (default 1)")
    stream.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    stream.add_argument("--size", type=_size, default=(640, 360), help="WxH (default 640x360)")
    stream.add_argument(
        "--passes", type=int, default=1, help="passes of each person, over all cameras"
    )
    stream.add_argument(
        "--face-px",
        type=lambda t: _pair(t, "face-px"),
        default=(72.0, 128.0),
        help="face size range in pixels, far,near (default 72,128)",
    )
    stream.add_argument(
        "--pass-seconds",
        type=lambda t: _pair(t, "pass-seconds"),
        default=(3.0, 5.0),
        help="time to cross the frame, low,high (default 3,5)",
    )
    stream.add_argument(
        "--overlap", type=float, default=0.2, help="chance of two people on screen (0.2)"
    )
    stream.add_argument(
        "--min-repeat-gap",
        type=float,
        default=60.0,
        metavar="S",
        help="same person on the same camera at least S seconds apart; keep it above the alert "
        "service's cool-down (LFR_ALERT_COOLDOWN_S, default 60) or repeat passes fold into one "
        "alert (default 60)",
    )
    stream.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``lfr synth`` subcommands."""
    sub = parser.add_subparsers(title="synth commands", metavar="ACTION")
    run = sub.add_parser(
        "run",
        help="drive synthetic cameras through the suite and report accuracy and latency",
        description="Build synthetic camera streams, enrol a watch list, start a deployment, "
        "stream into ingest, collect alerts and report identification rate, false alerts, "
        "latency, frames/s and drops (table, JSON, PNG).",
    )
    _stream_args(run)
    drive = run.add_argument_group("run")
    drive.add_argument("--mode", choices=("push", "pull"), default="push")
    drive.add_argument("--encoding", choices=("jpeg", "png", "raw"), default="jpeg")
    drive.add_argument(
        "--threshold",
        type=float,
        default=0.0,
        help="deployment threshold (default 0: the calibrated default)",
    )
    drive.add_argument(
        "--sweep",
        action="store_true",
        help=f"deploy at the threshold floor ({THRESHOLD_FLOOR}) and report every threshold "
        "above it from the alert scores; the main figures are then for --threshold "
        f"(default {DEFAULT_THRESHOLD})",
    )
    drive.add_argument(
        "--no-realtime", action="store_true", help="push frames as fast as ingest takes them"
    )
    drive.add_argument("--settle", type=float, default=5.0, help="wait for late alerts (s)")
    drive.add_argument("--no-adjudicate", action="store_true", help="leave alerts pending")
    drive.add_argument(
        "--keep-entries", action="store_true", help="do not remove the enrolled entries"
    )
    drive.add_argument(
        "--start",
        action="store_true",
        help="start a private embedded suite for the run (free ports) and stop it after",
    )
    drive.add_argument(
        "--out",
        type=Path,
        default=Path("lfr-synth-out"),
        help="folder for report.json, report.png, truth.json",
    )
    run.set_defaults(handler=run_synth)

    render = sub.add_parser(
        "render", help="write the synthetic streams as video files with their ground truth"
    )
    _stream_args(render)
    render.add_argument("--out", type=Path, required=True, help="output folder")
    render.add_argument("--codec", choices=("mjpg", "mp4v"), default="mjpg")
    render.set_defaults(handler=run_render)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(handler=usage)


def _stream_config(args: argparse.Namespace, camera_prefix: str = "synth-cam-") -> StreamConfig:
    width, height = args.size
    return StreamConfig(
        width=width,
        height=height,
        fps=args.fps,
        cameras=args.cameras,
        camera_prefix=camera_prefix,
        face_px=args.face_px,
        pass_s=args.pass_seconds,
        overlap=args.overlap,
        passes_per_identity=args.passes,
        min_repeat_gap_s=args.min_repeat_gap,
        seed=args.seed,
    )


async def _locate(identities: list[Identity], triton_url: str | None, how: str) -> list[Identity]:
    if how == "centre" or all(p.located_by != "centre" for i in identities for p in i.photos):
        return identities
    if triton_url is None:
        if how == "detector":
            raise ConfigError("--locate detector needs Triton (start the suite or use --start)")
        return identities
    from lfr.inference import TritonFaceAnalyzer  # only here: tritonclient loads slowly

    analyzer = TritonFaceAnalyzer(triton_url, timeout_s=30.0)
    try:
        if not await analyzer.ready():
            if how == "detector":
                raise ConfigError(f"Triton at {triton_url} is not ready")
            _say("Triton not ready: assuming faces are centred")
            return identities
        count = sum(len(i.photos) for i in identities)
        _say(f"locating faces in {count} photos with the detector ...")
        located, fallbacks = await locate_faces(identities, analyzer)
        if fallbacks:
            _say(f"no face found in {fallbacks} photo(s): kept them with a centred box")
        return located
    except LfrError as exc:
        if how == "detector":
            raise
        _say(f"detector unavailable ({exc}): assuming faces are centred")
        return identities
    finally:
        await analyzer.close()


async def _harness(args: argparse.Namespace, triton_url: str | None) -> Harness:
    if args.photos is None:
        identities = load_sample_identities()
        default_enrol: list[str] | None = ["grace_hopper"]
    else:
        identities = load_folder(args.photos)
        default_enrol = None
    strangers = load_folder(args.strangers) if args.strangers else []
    identities = await _locate(identities, triton_url, args.locate)
    strangers = await _locate(strangers, triton_url, args.locate) if strangers else []
    if getattr(args, "enrol", None):
        names = choose_watchlist(identities, names=args.enrol)
    elif getattr(args, "enrol_count", None) is not None or default_enrol is None:
        count = args.enrol_count if args.enrol_count is not None else max(1, len(identities) // 4)
        names = choose_watchlist(identities, count=count, seed=args.seed)
    else:
        names = default_enrol
    return prepare(
        identities,
        _stream_config(args),
        enrol_names=names,
        enrol_photos=args.enrol_photos,
        strangers=strangers,
        max_identities=args.max_identities,
    )


@contextlib.contextmanager
def _suite(args: argparse.Namespace) -> Iterator[Suite]:
    if args.start:
        with embedded_suite(_say) as suite:
            yield suite
    else:
        yield running_suite()


def run_synth(args: argparse.Namespace) -> int:
    with terminate_as_interrupt(), _suite(args) as suite:
        return asyncio.run(_run(args, suite))


async def _run(args: argparse.Namespace, suite: Suite) -> int:
    harness = await _harness(args, suite.triton_url)
    scenario = harness.scenario
    _say(
        f"{len(harness.identities)} people ({len(harness.enrol)} enrolled), "
        f"{len(scenario.passes)} passes over {scenario.config.cameras} camera(s), "
        f"{scenario.duration_s:.1f} s at {scenario.config.fps:g} fps"
    )
    threshold = THRESHOLD_FLOOR if args.sweep else args.threshold
    operating = (args.threshold or DEFAULT_THRESHOLD) if args.sweep else None
    options = DriveOptions(
        mode=args.mode,
        encoding=args.encoding,
        threshold=threshold,
        realtime=not args.no_realtime,
        settle_s=args.settle,
        adjudicate=not args.no_adjudicate,
        cleanup=not args.keep_entries,
        video_dir=args.out / "videos" if args.mode == "pull" else None,
    )

    def on_alert(alert: AlertLog) -> None:
        _say(
            f"alert {alert.alert_id} {alert.camera_id} {alert.identity} "
            f"score {alert.score:.3f} latency {alert.latency_ms:.0f} ms"
        )

    driver = SynthDriver(
        suite.endpoints,
        harness.renderer,
        harness.enrol,
        options,
        events=RunEvents(progress=_say, alert=on_alert),
    )
    driver.decide = operator(harness.truth, lambda: driver.record)
    started = time.time()
    try:
        record = await driver.run()
    except Unavailable as exc:
        if args.start:
            raise
        raise Unavailable(f"{exc.message}, or pass --start for a private one") from None
    report = compute_report(harness.truth, record, threshold=operating)
    print(format_report(report))
    out = write_outputs(args.out, harness, record.to_json(), report, started)
    _say(f"wrote {', '.join(str(p) for p in out)}")
    return 0


def write_outputs(
    out: Path, harness: Harness, record: dict[str, Any], report: Any, started: float
) -> list[Path]:
    from lfr_cli.synth.plot import plot_report  # matplotlib loads slowly

    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "report": report.to_json(),
        "record": record,
    }
    report_path = out / "report.json"
    report_path.write_text(json.dumps(payload, indent=1) + "\n")
    plot_path = plot_report(report, out / "report.png")
    truth_path = write_ground_truth(harness.truth, harness.scenario, out / "truth.json")
    return [report_path, plot_path, truth_path]


def run_render(args: argparse.Namespace) -> int:
    return asyncio.run(_render(args))


async def _render(args: argparse.Namespace) -> int:
    triton = None if args.locate == "centre" else running_suite().triton_url
    harness = await _harness(args, triton)
    _say(
        f"rendering {len(harness.scenario.passes)} passes, "
        f"{harness.scenario.frames_per_camera} frames x {harness.scenario.config.cameras} "
        "camera(s)"
    )
    paths = write_videos(harness.renderer, args.out, codec=args.codec)
    truth = write_ground_truth(harness.truth, harness.scenario, args.out / "truth.json")
    for path in [*paths.values(), truth]:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lfr_cli.synth.cli`` without the ``lfr`` entry point."""
    parser = argparse.ArgumentParser(prog="lfr synth")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return int(args.handler(args))
