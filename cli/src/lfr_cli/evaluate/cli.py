"""``lfr evaluate <folder>``: open-set identification accuracy through the real services.

Only argparse at import time: ``lfr`` imports every command module to build its parser, and
``lfr up`` must not pay for matplotlib, scipy or gRPC stubs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

from lfr.common.errors import InvalidArgument

if TYPE_CHECKING:
    from lfr_cli.commands import Subparsers
    from lfr_cli.evaluate.dataset import Dataset
    from lfr_cli.evaluate.report import Outputs, Report
    from lfr_cli.evaluate.run import RunOptions
    from lfr_cli.evaluate.suite import Endpoints

__all__ = ["DEFAULT_SWEEP", "add_parser", "parse_thresholds", "run"]

#: Thresholds of the table when ``--thresholds`` is not given (the configured default and floor
#: are always added).
DEFAULT_SWEEP: Final = "0.85:0.98:0.01"


def parse_thresholds(text: str) -> list[float]:
    """``"0.6,0.7,0.75"`` or ``"start:stop:step"`` (stop included); each in [-1, 1]."""
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = round((stop - start) / step)
            values = [round(start + i * step, 3) for i in range(count + 1)]
        else:
            values = [round(float(part), 3) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give thresholds as 0.6,0.7,0.8 or start:stop:step (e.g. 0.6:0.96:0.02)"
        ) from None
    if not values or any(not -1.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: thresholds are scores between -1 and 1")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a rate between 0 and 1, e.g. 0.001")
    return value


def add_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="measure identification accuracy (TPIR, FPIR) on a folder of labelled photos",
        description=(
            "Open-set identification evaluation through the real services: one photo per "
            "identity is enrolled with the watchlist service (Triton models, Redis vector "
            "index), every other photo of an enrolled identity is searched as a mated probe and "
            "every photo of anyone else as a non-mated probe. Layouts: people/<identity>/*.jpg "
            "+ distractors/<identity>.jpg, or <identity>/*.jpg folders (identities with one "
            "photo become non-mated probes). Writes evaluation.json, table.txt and det.png. "
            "See docs/ACCURACY.md."
        ),
    )
    parser.add_argument("folder", type=Path, help="the labelled photos")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("lfr-evaluation"),
        help="folder for evaluation.json, table.txt and det.png (default ./lfr-evaluation)",
    )
    parser.add_argument(
        "--target-fpir",
        type=_fraction,
        default=0.001,
        help="report the lowest threshold whose measured FPIR is at most this (default 0.001)",
    )
    parser.add_argument(
        "--thresholds",
        type=parse_thresholds,
        default=parse_thresholds(DEFAULT_SWEEP),
        help=f"table rows: 0.7,0.8 or start:stop:step (default {DEFAULT_SWEEP}; the configured "
        "default and floor are always included)",
    )
    probes = parser.add_argument_group("probes")
    probes.add_argument(
        "--multi-face",
        choices=("largest", "skip"),
        default="largest",
        help="a probe photo with several faces: search its largest face (default), or skip it",
    )
    probes.add_argument(
        "--min-face-px",
        type=float,
        default=40.0,
        help="probe faces smaller than this (shorter box side, px) are 'too small' (default 40)",
    )
    probes.add_argument(
        "--top-k",
        type=int,
        default=100,
        help="candidates per search; rank 1 decides, the rest give the 1:1 FMR (default 100)",
    )
    probes.add_argument(
        "--concurrency", type=int, default=4, help="images in flight at once (default 4)"
    )
    probes.add_argument(
        "--timeout", type=float, default=30.0, help="deadline of each call, seconds (default 30)"
    )
    suite = parser.add_argument_group(
        "services (default: start a private Redis, Triton, alert and watchlist, stop them after)"
    )
    suite.add_argument(
        "--running",
        action="store_true",
        help="use the suite `lfr up` started (its LFR_*_PORT settings) instead",
    )
    suite.add_argument("--watchlist-addr", help="watchlist service host:port (implies --running)")
    suite.add_argument(
        "--redis-url", help="Redis URL, e.g. redis://host:16379/0 (implies --running)"
    )
    suite.add_argument("--triton-url", help="Triton gRPC host:port (implies --running)")
    suite.add_argument(
        "--keep-entries",
        action="store_true",
        help="leave the evaluation entries in the watch list (default: removed at the end)",
    )
    parser.add_argument(
        "--per-probe",
        action="store_true",
        help="also write each probe's file, identity and rank-1 result into evaluation.json",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=run)


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(f"lfr evaluate: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from lfr_cli.evaluate.dataset import load_dataset
    from lfr_cli.evaluate.run import RunOptions
    from lfr_cli.evaluate.suite import embedded_suite, running_suite

    if args.top_k < 1 or args.concurrency < 1 or args.timeout <= 0 or args.min_face_px < 0:
        raise InvalidArgument(
            "--top-k and --concurrency must be at least 1, --timeout above 0, --min-face-px >= 0"
        )
    dataset = load_dataset(args.folder)  # bad folder: fail before starting anything
    _say(
        args,
        f"{dataset.root}: {len(dataset.subjects)} identities to enrol, "
        f"{dataset.image_count} images",
    )
    options = RunOptions(
        top_k=args.top_k,
        min_face_px=args.min_face_px,
        multi_face=args.multi_face,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        remove_entries=not args.keep_entries,
    )
    use_running = args.running or any((args.watchlist_addr, args.redis_url, args.triton_url))
    if use_running:
        endpoints = running_suite(
            watchlist_addr=args.watchlist_addr,
            redis_url=args.redis_url,
            triton_url=args.triton_url,
        )
        outputs, report = asyncio.run(_evaluate(args, dataset, endpoints, options))
    else:
        with embedded_suite(say=lambda m: _say(args, m)) as endpoints:
            outputs, report = asyncio.run(_evaluate(args, dataset, endpoints, options))
    from lfr_cli.evaluate.report import render_table

    print(render_table(report))
    print(f"\nwrote {outputs.json_path}, {outputs.table_path}, {outputs.plot_path}")
    return 0


async def _evaluate(
    args: argparse.Namespace,
    dataset: Dataset,
    endpoints: Endpoints,
    options: RunOptions,
) -> tuple[Outputs, Report]:
    from lfr.inference import TritonFaceAnalyzer
    from lfr_cli.evaluate.adapters import GrpcEnroller, IndexSearch
    from lfr_cli.evaluate.report import build_report, write_outputs
    from lfr_cli.evaluate.run import run_evaluation

    enroller = GrpcEnroller(endpoints.watchlist_addr, timeout_s=options.timeout_s)
    analyzer = TritonFaceAnalyzer(endpoints.triton_url, timeout_s=options.timeout_s)
    search = IndexSearch(endpoints.redis_url)
    last: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        step = max(1, total // 10)
        if done in (0, total) or done - last.get(stage, 0) >= step:
            last[stage] = done
            _say(args, f"{stage}: {done}/{total}")

    try:
        version = await analyzer.model_version()
        run = await run_evaluation(
            dataset,
            enroller=enroller,
            analyzer=analyzer,
            search=search,
            options=options,
            progress=None if args.quiet else progress,
        )
    finally:
        await enroller.close()
        await analyzer.close()
        await search.close()
    report = build_report(run, args.thresholds, args.target_fpir, model_version=version)
    outputs = write_outputs(report, args.out, per_probe=args.per_probe)
    return outputs, report
