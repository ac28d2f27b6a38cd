"""What an evaluation run produces: a JSON document, a terminal table and a DET plot.

The JSON holds aggregate figures, the anonymous rank-1 scores (enough to recompute any
operating point) and the paths of problem images. Which person each probe was taken for is only
written with ``per_probe=True`` (evaluation data sets often may not be published per person).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lfr.common import scores
from lfr_cli.evaluate.metrics import (
    OperatingPoint,
    TargetThreshold,
    det_curve,
    fmr_exact_above,
    operating_point,
    projected_fpir,
    sweep,
    threshold_for_fpir,
)
from lfr_cli.evaluate.run import EvaluationRun, ImageProblem

__all__ = ["FORMAT_VERSION", "Report", "build_report", "render_table", "write_outputs"]

FORMAT_VERSION: Final = 1
SCORE_SCALE: Final = (
    "cosine similarity of L2-normalised embeddings, -1..1; a match when score >= threshold "
    "(lfr.common.scores; see docs/ACCURACY.md)"
)
#: Watch-list sizes the 1:1 FMR at the default threshold is projected to.
PROJECTED_SIZES: Final = (100, 1_000, 10_000)
#: Problem images listed on the terminal before "... and N more" (the JSON lists all).
TERMINAL_LIST_LIMIT: Final = 20


@dataclass(frozen=True)
class Report:
    run: EvaluationRun
    points: list[OperatingPoint]
    target: TargetThreshold
    default_point: OperatingPoint
    floor_point: OperatingPoint
    model_version: str

    @property
    def mated(self) -> int:
        return sum(1 for s in self.run.searches if s.mated)

    @property
    def nonmated(self) -> int:
        return sum(1 for s in self.run.searches if not s.mated)


def build_report(
    run: EvaluationRun,
    thresholds: Sequence[float],
    target_fpir: float,
    *,
    model_version: str = "",
) -> Report:
    searches = run.searches
    marks = {scores.DEFAULT_THRESHOLD, scores.THRESHOLD_FLOOR}
    return Report(
        run=run,
        points=sweep(searches, [round(t, 3) for t in (*thresholds, *marks)]),
        target=threshold_for_fpir(searches, target_fpir),
        default_point=operating_point(searches, scores.DEFAULT_THRESHOLD),
        floor_point=operating_point(searches, scores.THRESHOLD_FLOOR),
        model_version=model_version,
    )


def _counts(problems: Sequence[ImageProblem]) -> dict[str, int]:
    return dict(sorted(Counter(p.reason for p in problems).items()))


def to_json(report: Report, *, per_probe: bool = False) -> dict[str, Any]:
    run = report.run
    ds = run.dataset
    doc: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "dataset": {
            "folder": str(ds.root),
            "layout": str(ds.layout),
            "identities_to_enrol": len(ds.subjects),
            "nonmated_photos": len(ds.nonmated),
            "images": ds.image_count,
            "notes": [
                {"kind": str(n.kind), "path": n.path, "message": n.message} for n in ds.notes
            ],
        },
        "model_version": report.model_version,
        "score_scale": SCORE_SCALE,
        "options": {
            "top_k": run.options.top_k,
            "min_face_px": run.options.min_face_px,
            "multi_face": run.options.multi_face,
        },
        "watchlist": {
            "watchlist_id": run.watchlist_id,
            "entries": len(run.enrolled),
            "not_enrolled": run.not_enrolled,
            "entries_removed": run.entries_removed,
            "cleanup_error": run.cleanup_error,
        },
        "searches": {"mated": report.mated, "nonmated": report.nonmated},
        "images": {
            "no_usable_face": [p.as_dict() for p in run.no_usable_face],
            "no_usable_face_counts": _counts(run.no_usable_face),
            "failures": [p.as_dict() for p in run.failures],
            "failure_counts": _counts(run.failures),
            "several_faces_largest_searched": run.several_faces_used,
        },
        "sweep": [p.as_dict() for p in report.points],
        "target": report.target.as_dict(),
        "configured": {
            "default_threshold": scores.DEFAULT_THRESHOLD,
            "threshold_floor": scores.THRESHOLD_FLOOR,
            "default": report.default_point.as_dict(),
            "floor": report.floor_point.as_dict(),
            "default_projected_fpir": _projection(report.default_point),
        },
        "fmr_exact_above": fmr_exact_above(run.searches),
        "det": [[p.threshold, p.fpir, p.fnir] for p in det_curve(run.searches)],
        "rank1_scores": {
            "mated": [[s.top_score, s.top_correct] for s in run.searches if s.mated],
            "nonmated": [s.top_score for s in run.searches if not s.mated],
        },
        "seconds": {k: round(v, 2) for k, v in run.seconds.items()},
    }
    if per_probe:
        doc["probes"] = [
            {
                "path": p.path,
                "identity": p.identity,
                "mated": p.mated,
                "rank1_identity": p.top_identity,
                "rank1_score": p.top_score,
                "faces_found": p.faces_found,
            }
            for p in run.probes
        ]
    return doc


def _projection(point: OperatingPoint) -> dict[str, float] | None:
    """FPIR the default's 1:1 FMR implies for larger watch lists (independence assumed)."""
    if point.fmr is None:
        return None
    return {str(n): projected_fpir(point.fmr, n) for n in PROJECTED_SIZES}


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.1e}" if value < 0.001 else f"{value:.4f}"


def render_table(report: Report) -> str:
    run, ds = report.run, report.run.dataset
    lines = [
        f"lfr evaluate: {ds.root} ({ds.layout})",
        f"  watch list: {_plural(len(run.enrolled), 'identity', 'identities')} enrolled"
        " (one photo each)"
        + (f"; {len(run.not_enrolled)} could not be enrolled" if run.not_enrolled else ""),
        f"  searches:   {report.mated} mated, {report.nonmated} non-mated probes",
        "  no usable face: "
        + _problem_summary(run.no_usable_face)
        + (
            f"; several faces, largest searched: {len(run.several_faces_used)}"
            if run.several_faces_used
            else ""
        ),
        "  failures:   " + _problem_summary(run.failures),
        f"  score:      {SCORE_SCALE}",
        "",
        "  threshold    TPIR    FNIR  mis-id     FPIR  FPIR<=(95%)      FMR",
    ]
    marks = {
        round(scores.THRESHOLD_FLOOR, 3): "<- floor",
        round(scores.DEFAULT_THRESHOLD, 3): "<- default",
    }
    for p in report.points:
        mark = marks.get(round(p.threshold, 3), "")
        lines.append(
            f"  {p.threshold:9.3f} {_pct(p.tpir):>7} {_pct(p.fnir):>7}"
            f" {_pct(p.misidentification_rate):>7} {_pct(p.fpir, 2):>8}"
            f" {_pct(p.fpir_upper95, 2):>12} {_rate(p.fmr):>8}  {mark}".rstrip()
        )
    lines.append("")
    lines.extend(_target_lines(report.target, report.nonmated))
    projection = _projection(report.default_point)
    if projection is not None:
        default = report.default_point
        rates = " / ".join(_pct(v, 2) for v in projection.values())
        sizes = " / ".join(f"{int(n):,}" for n in projection)
        lines.append(
            f"  at the default {default.threshold:g}, the 1:1 FMR {_rate(default.fmr)} projects to"
            f" FPIR {rates} for watch lists of {sizes} entries (a rough guide; this one had "
            f"{len(run.enrolled)})"
        )
    if run.cleanup_error:
        lines.append(f"  warning: {run.cleanup_error}")
    problems = run.problems
    if problems:
        lines.append("")
        lines.append("  images not searched:")
        for problem in problems[:TERMINAL_LIST_LIMIT]:
            lines.append(
                f"    {problem.path} ({problem.role}): {problem.reason}: {problem.message}"
            )
        if len(problems) > TERMINAL_LIST_LIMIT:
            lines.append(f"    ... and {len(problems) - TERMINAL_LIST_LIMIT} more (see the JSON)")
    notes = ds.notes
    if notes:
        lines.append("")
        lines.append("  dataset notes:")
        for n in notes[:TERMINAL_LIST_LIMIT]:
            lines.append(f"    {n.path}: {n.message}")
        if len(notes) > TERMINAL_LIST_LIMIT:
            lines.append(f"    ... and {len(notes) - TERMINAL_LIST_LIMIT} more (see the JSON)")
    return "\n".join(lines)


def _problem_summary(problems: Sequence[ImageProblem]) -> str:
    if not problems:
        return "none"
    detail = ", ".join(f"{reason} {n}" for reason, n in _counts(problems).items())
    return f"{_plural(len(problems), 'image', 'images')} ({detail})"


def _target_lines(target: TargetThreshold, nonmated: int) -> list[str]:
    if target.threshold is None or target.point is None:
        return ["  no non-mated probes: FPIR and a threshold for a target FPIR cannot be measured"]
    p = target.point
    lines = [
        f"  threshold for FPIR <= {target.target_fpir:g}: {target.threshold:.3f} "
        f"(TPIR {_pct(p.tpir)}, FPIR {p.false_positives}/{p.nonmated})"
    ]
    if not target.resolvable:
        lines.append(
            f"    caution: {nonmated} non-mated searches cannot show an FPIR of "
            f"{target.target_fpir:g} (the smallest non-zero FPIR they measure is "
            f"1/{nonmated} = {1 / nonmated:.2g}); this threshold only lies above every non-mated "
            f"score, and FPIR is below {_pct(p.fpir_upper95, 2)} with 95% confidence"
        )
    elif not target.demonstrated:
        lines.append(
            f"    caution: with {nonmated} non-mated searches, FPIR is only shown to be below "
            f"{_pct(p.fpir_upper95, 2)} with 95% confidence"
        )
    return lines


def write_plot(report: Report, path: Path) -> None:
    """DET-style plot (FNIR against FPIR, log FPIR axis) and the rank-1 score distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = report.run
    searches = run.searches
    nonmated = report.nonmated
    fig, (det_ax, hist_ax) = plt.subplots(1, 2, figsize=(12, 5))

    det = [p for p in det_curve(searches) if p.fpir > 0]
    floor_x = 1.0 / nonmated if nonmated else 1e-3
    if det:
        det_ax.step([p.fpir for p in det], [p.fnir for p in det], where="post", label="lfr")
    for point, name, style in (
        (report.default_point, "default", "o"),
        (report.floor_point, "floor", "s"),
    ):
        if point.fpir is None or point.fnir is None:
            continue
        x = max(point.fpir, floor_x)
        label = f"{name} {point.threshold:g}: FNIR {_pct(point.fnir)}, FPIR {_pct(point.fpir, 2)}"
        if point.fpir == 0:
            label += f" (< 1/{nonmated})"
        det_ax.plot([x], [point.fnir], style, markersize=8, label=label)
    if nonmated:
        det_ax.axvline(
            floor_x, color="grey", linestyle=":", label=f"1 false alert in {nonmated} searches"
        )
    det_ax.axvline(
        report.target.target_fpir,
        color="red",
        linestyle="--",
        label=f"target FPIR {report.target.target_fpir:g}",
    )
    det_ax.set_xscale("log")
    low = min(report.target.target_fpir, floor_x) / 2
    det_ax.set_xlim(low, 1.0)
    det_ax.set_ylim(0.0, 1.0)
    det_ax.set_xlabel("FPIR (non-mated searches alerting), log scale")
    det_ax.set_ylabel("FNIR (mated searches not found at rank 1)")
    det_ax.set_title(
        f"DET: {len(run.enrolled)} enrolled, {report.mated} mated, {nonmated} non-mated"
    )
    det_ax.grid(True, which="both", alpha=0.3)
    det_ax.legend(fontsize=8, loc="upper right")

    hits = [s.top_score for s in searches if s.mated and s.top_correct and s.top_score is not None]
    wrong = [
        s.top_score for s in searches if s.mated and not s.top_correct and s.top_score is not None
    ]
    strangers = [s.top_score for s in searches if not s.mated and s.top_score is not None]
    every = hits + wrong + strangers
    if every:
        lo, hi = math.floor(min(every) * 50) / 50, math.ceil(max(every) * 50) / 50
        bins = [lo + i * 0.01 for i in range(round((hi - lo) / 0.01) + 1)]
        if len(bins) < 2:
            bins = [lo - 0.01, lo + 0.01]
        tallest = 0.0
        for values, label in (
            (hits, f"mated, rank 1 correct ({len(hits)})"),
            (wrong, f"mated, rank 1 wrong ({len(wrong)})"),
            (strangers, f"non-mated ({len(strangers)})"),
        ):
            counts, _, _ = hist_ax.hist(values, bins=bins, alpha=0.6, label=label)
            tallest = max(tallest, float(max(counts, default=0)))
        hist_ax.set_ylim(0, max(1.0, tallest) * 1.45)  # room for the legend above the bars
    hist_ax.axvline(scores.DEFAULT_THRESHOLD, color="black", label="default threshold")
    hist_ax.axvline(scores.THRESHOLD_FLOOR, color="black", linestyle="--", label="floor")
    hist_ax.set_xlabel("rank-1 score (cosine similarity)")
    hist_ax.set_ylabel("searches")
    hist_ax.set_title("rank-1 scores")
    hist_ax.legend(fontsize=8, loc="upper left")
    version = f", model {report.model_version}" if report.model_version else ""
    fig.suptitle(f"lfr evaluate: {run.dataset.root.name}{version}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass(frozen=True)
class Outputs:
    json_path: Path
    table_path: Path
    plot_path: Path


def write_outputs(report: Report, out_dir: Path, *, per_probe: bool = False) -> Outputs:
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(out_dir / "evaluation.json", out_dir / "table.txt", out_dir / "det.png")
    outputs.json_path.write_text(json.dumps(to_json(report, per_probe=per_probe), indent=1) + "\n")
    outputs.table_path.write_text(render_table(report) + "\n")
    write_plot(report, outputs.plot_path)
    return outputs
