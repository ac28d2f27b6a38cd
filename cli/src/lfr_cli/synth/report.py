"""Figures of a run, against the ground truth: identification rate, false alerts, latency,
throughput, drops — and the same identification/false-alert pair across thresholds.

Definitions (what the terminal table, the JSON and the plot show):

* **pass** — one person walking past one camera once. An enrolled person's pass is
  *identified* when at least one alert was raised for that person with its box on that
  person's face (:meth:`GroundTruth.associate`). **Identification rate** = identified passes /
  passes of enrolled people.
* **false alert** — any other alert (a stranger, or another enrolled person, matched; or a
  box where nobody was). Rate: per 1,000 faces seen, faces seen = ingest's ``faces_detected``
  over the run (falling back to the ground truth's visible faces in processed frames).
* **alert latency** — alert received by the subscriber minus the capture time of the frame
  its probe came from (the best shot of the track), wall clock of this machine.
* **frames/s** — frames ingest processed over the streaming time; **drops** — ingest's counters.
* **sweep** — for each threshold t at or above the deployment's: identification rate and false
  alerts counting only alerts whose score ≥ t. Run with a low deployment threshold (the floor)
  to sweep a wide range in one run (``lfr synth run --sweep``), and pick the operating
  threshold the main figures are for (``compute_report(threshold=...)``). A pass whose first
  match scored below t but whose later repeat (folded into the same alert by the cool-down)
  scored above it counts as missed at t, so the curve slightly understates identification at
  higher thresholds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from lfr_cli.synth.record import STAT_FIELDS, AlertLog, RunRecord
from lfr_cli.synth.truth import Association, GroundTruth

__all__ = [
    "AlertOutcome",
    "PassOutcome",
    "Report",
    "SweepPoint",
    "associate_alert",
    "compute_report",
    "format_report",
    "percentiles",
]

#: How far (seconds) around an alert's capture time its face is looked for, when the frame it
#: came from is not known exactly (pull sources: ingest stamps the capture time itself).
PULL_WINDOW_S: Final = 2.0
SWEEP_STEP: Final = 0.005


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max (None when there are no values)."""
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = (float(v) for v in np.percentile(arr, [50, 95, 99]))
    return {"count": int(arr.size), "p50": p50, "p95": p95, "p99": p99, "max": float(arr.max())}


@dataclass
class PassOutcome:
    pass_id: int
    camera_id: str
    identity: str
    enrolled: bool
    alert_ids: list[str] = field(default_factory=list)  #: true alerts for this pass
    best_score: float | None = None

    @property
    def identified(self) -> bool:
        return bool(self.alert_ids)


@dataclass
class AlertOutcome:
    alert_id: str
    camera_id: str
    identity: str  #: who the alert says it is
    on_screen: str | None  #: who the ground truth has under its box (None: nobody)
    pass_id: int | None
    true: bool
    score: float
    latency_ms: float
    counted: bool = True  #: at or above the operating threshold (else: only in the sweep)


@dataclass
class SweepPoint:
    threshold: float
    identification_rate: float | None
    identified_passes: int
    false_alerts: int
    false_alerts_per_1000_faces: float | None


@dataclass
class Report:
    mode: str
    cameras: int
    fps: float
    threshold: float  #: the operating threshold the figures are for
    deployment_threshold: float  #: what the deployment ran at (the sweep starts there)
    duration_s: float
    watchlist_size: int
    enrol_failures: int
    passes_total: int
    passes_enrolled: int
    passes_identified: int
    identification_rate: float | None
    alerts_total: int
    true_alerts: int
    false_alerts: int
    duplicate_alerts: int  #: true alerts beyond the first of their pass
    faces_seen: int
    faces_seen_source: str
    false_alerts_per_1000_faces: float | None
    alert_latency_ms: dict[str, float | int | None]
    frame_latency_ms: dict[str, float | int | None]
    frames_sent: int
    frames_processed: int
    frames_per_s: float | None
    drops: dict[str, int]
    sweep: list[SweepPoint]
    passes: list[PassOutcome]
    alerts: list[AlertOutcome]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for p, outcome in zip(data["passes"], self.passes, strict=True):
            p["identified"] = outcome.identified
        return data

    def summary_json(self) -> dict[str, Any]:
        """Aggregates only (no per-person rows): what may be published for a labelled set."""
        data = self.to_json()
        data.pop("passes")
        data.pop("alerts")
        return data


def _frame_of(alert: AlertLog, record: RunRecord, index: dict[tuple[str, int], int]) -> int:
    exact = index.get((alert.camera_id, alert.capture_ns))
    if exact is not None:
        return exact
    sent = [f for f in record.frames if f.camera_id == alert.camera_id]
    if sent:
        return min(sent, key=lambda f: abs(f.capture_ns - alert.capture_ns)).frame
    return round((alert.capture_ns - record.started_ns) / 1e9 * record.fps)


def associate_alert(
    truth: GroundTruth,
    record: RunRecord,
    alert: AlertLog,
    index: dict[tuple[str, int], int] | None = None,
) -> tuple[str, Association]:
    """(the identity the alert names, the true face under its box). Pushed frames are known
    by capture time; for pulled ones the frame is estimated and a window searched."""
    index = record.frame_index() if index is None else index
    identity = alert.identity or record.identity_of_entry().get(alert.entry_id, alert.subject_ref)
    frame = _frame_of(alert, record, index)
    if index:
        found = truth.associate(alert.camera_id, alert.box, identity, frame, 0)
        if found.face is None:
            # The probe's box may come from a neighbouring frame of the track.
            found = truth.associate(alert.camera_id, alert.box, identity, frame, 1)
        return identity, found
    window = max(1, round(PULL_WINDOW_S * record.fps))
    return identity, truth.associate(alert.camera_id, alert.box, identity, frame, window)


def compute_report(
    truth: GroundTruth, record: RunRecord, *, threshold: float | None = None
) -> Report:
    """The figures at the operating ``threshold`` (default: the deployment's; never below it:
    alerts under the deployment's threshold were never raised) and the sweep above the
    deployment's threshold."""
    operating = record.threshold if threshold is None else max(threshold, record.threshold)
    enrolled = set(record.enrolled)
    passes = {
        pid: PassOutcome(pid, info.camera_id, info.identity, info.identity in enrolled)
        for pid, info in sorted(truth.passes.items())
        if info.camera_id in record.camera_ids
    }
    index = record.frame_index()

    outcomes: list[AlertOutcome] = []
    for alert in sorted(record.alerts, key=lambda a: a.received_ns):
        identity, found = associate_alert(truth, record, alert, index)
        true = found.is_true_for(identity)
        pass_id = found.face.pass_id if found.face is not None else None
        outcomes.append(
            AlertOutcome(
                alert.alert_id,
                alert.camera_id,
                identity,
                found.face.identity if found.face is not None else None,
                pass_id,
                true,
                alert.score,
                alert.latency_ms,
                alert.score >= operating,
            )
        )
        if true and pass_id in passes and alert.score >= operating:
            outcome = passes[pass_id]
            outcome.alert_ids.append(alert.alert_id)
            outcome.best_score = max(outcome.best_score or -1.0, alert.score)

    enrolled_passes = [p for p in passes.values() if p.enrolled]
    identified = sum(1 for p in enrolled_passes if p.identified)
    counted = [o for o in outcomes if o.counted]
    true_alerts = sum(1 for o in counted if o.true)
    false_alerts = len(counted) - true_alerts
    duplicates = sum(max(0, len(p.alert_ids) - 1) for p in passes.values())

    faces_seen = sum(s.get("faces_detected", 0) for s in record.stats.values())
    faces_source = "ingest faces_detected"
    if faces_seen <= 0:
        processed: dict[str, list[int]] = {}
        for f in record.frames:
            if f.status == "PROCESSED":
                processed.setdefault(f.camera_id, []).append(f.frame)
        faces_seen = sum(truth.visible_faces(cam, frames) for cam, frames in processed.items())
        faces_source = "ground truth (visible faces in processed frames)"

    def per_1000(count: int) -> float | None:
        return 1000.0 * count / faces_seen if faces_seen > 0 else None

    def rate(count: int) -> float | None:
        return count / len(enrolled_passes) if enrolled_passes else None

    sweep = []
    # The threshold travelled as a float32: 0.93 arrives as 0.93000000715.
    lowest = math.ceil(round(record.threshold / SWEEP_STEP, 3)) * SWEEP_STEP
    for t in np.arange(lowest, 1.0 + 1e-9, SWEEP_STEP):
        t = round(float(t), 4)
        hit = sum(
            1
            for p in enrolled_passes
            if any(o.score >= t for o in outcomes if o.true and o.pass_id == p.pass_id)
        )
        false = sum(1 for o in outcomes if not o.true and o.score >= t)
        sweep.append(SweepPoint(t, rate(hit), hit, false, per_1000(false)))

    # Pulled files are read as fast as ingest takes them and stamped with their video time, so
    # capture -> alert is not a latency there; ingest's own per-frame latency still is.
    timed = record.mode == "push"
    notes = list(record.notes)
    if not timed and counted:
        notes.append("pull mode: frames carry video time, so alert latency is not measured")
    matches = sum(s.get("matches", 0) for s in record.stats.values())
    if matches > len(record.alerts):
        notes.append(
            f"{matches - len(record.alerts)} of ingest's {matches} matches joined an earlier "
            "alert (the alert service's cool-down, wall clock)"
        )
    frame_latency = percentiles([f.latency_ms for f in record.frames if f.status == "PROCESSED"])
    if not frame_latency["count"] and record.ingest_latency_ms:
        # Per camera from ingest's GetStats; the slowest camera's figures.
        cams = list(record.ingest_latency_ms.values())
        frame_latency = {
            "count": int(sum(c.get("count", 0) for c in cams)),
            **{k: max(c.get(k, 0.0) for c in cams) for k in ("p50", "p95", "p99", "max")},
        }
    stats_total = {key: sum(s.get(key, 0) for s in record.stats.values()) for key in STAT_FIELDS}
    frames_processed = stats_total["frames_processed"] or sum(
        1 for f in record.frames if f.status == "PROCESSED"
    )
    frames_sent = len(record.frames) or stats_total["frames_in"]
    duration = record.duration_s
    drops = {
        "backpressure": stats_total["frames_dropped_backpressure"],
        "sampling": stats_total["frames_skipped_sampling"],
        "no_deployment": stats_total["frames_dropped_no_deployment"],
        "rejected": stats_total["frames_rejected"],
        "failed": stats_total["frames_failed"],
        "no_result": sum(1 for f in record.frames if not f.status),
    }
    return Report(
        mode=record.mode,
        cameras=len(record.camera_ids),
        fps=record.fps,
        threshold=operating,
        deployment_threshold=record.threshold,
        duration_s=duration,
        watchlist_size=len(record.enrolled),
        enrol_failures=len(record.enrol_failures),
        passes_total=len(passes),
        passes_enrolled=len(enrolled_passes),
        passes_identified=identified,
        identification_rate=rate(identified),
        alerts_total=len(counted),
        true_alerts=true_alerts,
        false_alerts=false_alerts,
        duplicate_alerts=duplicates,
        faces_seen=faces_seen,
        faces_seen_source=faces_source,
        false_alerts_per_1000_faces=per_1000(false_alerts),
        alert_latency_ms=percentiles([o.latency_ms for o in counted] if timed else []),
        frame_latency_ms=frame_latency,
        frames_sent=frames_sent,
        frames_processed=frames_processed,
        frames_per_s=frames_processed / duration if duration > 0 else None,
        drops=drops,
        sweep=sweep,
        passes=list(passes.values()),
        alerts=outcomes,
        notes=notes,
    )


def _fmt(value: float | int | None, spec: str = ".1f", suffix: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:{spec}}{suffix}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def format_report(report: Report, *, sweep_rows: int = 8) -> str:
    """The terminal table."""
    lat, flat = report.alert_latency_ms, report.frame_latency_ms
    drops = report.drops
    rows = [
        ("mode / cameras / fps", f"{report.mode} / {report.cameras} / {report.fps:g}"),
        ("threshold (deployment's)", f"{report.threshold:.3f} ({report.deployment_threshold:.3f})"),
        ("watch list", f"{report.watchlist_size} enrolled, {report.enrol_failures} refused"),
        ("passes (enrolled people)", f"{report.passes_total} ({report.passes_enrolled})"),
        (
            "identification rate",
            f"{_pct(report.identification_rate)}  "
            f"({report.passes_identified}/{report.passes_enrolled} passes)",
        ),
        (
            "alerts: true / false / repeat",
            f"{report.true_alerts} / {report.false_alerts} / {report.duplicate_alerts}",
        ),
        (
            "false alerts per 1,000 faces",
            f"{_fmt(report.false_alerts_per_1000_faces, '.2f')}  ({report.faces_seen} faces seen)",
        ),
        (
            "alert latency p50/p95/p99",
            f"{_fmt(lat['p50'], '.0f')} / {_fmt(lat['p95'], '.0f')} / {_fmt(lat['p99'], '.0f')} ms",
        ),
        (
            "frame latency p50/p95 (ingest)",
            f"{_fmt(flat['p50'], '.0f')} / {_fmt(flat['p95'], '.0f')} ms",
        ),
        (
            "frames sent / processed",
            f"{report.frames_sent} / {report.frames_processed} in {report.duration_s:.1f} s",
        ),
        ("frames/s processed", _fmt(report.frames_per_s, ".2f")),
        (
            "drops: backpressure / sampling",
            f"{drops['backpressure']} / {drops['sampling']}  "
            f"(no deployment {drops['no_deployment']}, rejected {drops['rejected']}, "
            f"failed {drops['failed']})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    if report.sweep and sweep_rows > 0:
        lines.append("")
        lines.append("threshold  identification  false alerts  per 1,000 faces")
        step = max(1, math.ceil(len(report.sweep) / sweep_rows))
        for point in report.sweep[::step]:
            lines.append(
                f"{point.threshold:9.3f}  {_pct(point.identification_rate):>14}  "
                f"{point.false_alerts:12d}  {_fmt(point.false_alerts_per_1000_faces, '.2f'):>15}"
            )
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
