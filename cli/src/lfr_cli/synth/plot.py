"""The PNG of a run: alert latency distribution, and identification rate against false alerts
across thresholds. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from lfr_cli.synth.report import Report

__all__ = ["plot_report"]


def _latency(ax: Axes, series: Mapping[str, list[float]]) -> None:
    every = [v for values in series.values() for v in values]
    if every:
        low, high = min(0.0, min(every)), max(0.0, max(every))
        bins = [float(b) for b in np.linspace(low, high * 1.05 + 1.0, 30)]
        for label, values in series.items():
            if values:
                p50, p95 = np.percentile(values, [50, 95])
                ax.hist(
                    values,
                    bins=bins,
                    alpha=0.6,
                    label=f"{label} (n={len(values)}, p50 {p50:.0f}, p95 {p95:.0f} ms)",
                )
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no alerts", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("latency, ms")
    ax.set_ylabel("alerts")
    ax.set_title("Alert latency (frame capture -> alert received)", fontsize=9)


def _sweep(ax: Axes, reports: Mapping[str, Report]) -> None:
    drawn = False
    high = 1.0
    for index, (label, report) in enumerate(reports.items()):
        points = [
            (p.false_alerts_per_1000_faces, p.identification_rate, p.threshold)
            for p in report.sweep
            if p.identification_rate is not None and p.false_alerts_per_1000_faces is not None
        ]
        if not points:
            continue
        xs = [x for x, _, _ in points]
        high = max(high, *xs)
        ax.plot(xs, [100.0 * y for _, y, _ in points], marker=".", lw=1, label=label)
        drawn = True
        if index > 0:
            continue  # thresholds are labelled on the first run's curve only (legible)
        # One label per distinct point: the range of thresholds that land on it.
        groups: list[tuple[float, float, float, float]] = []
        for x, y, t in points:
            if groups and groups[-1][0] == x and groups[-1][1] == y:
                groups[-1] = (x, y, groups[-1][2], t)
            else:
                groups.append((x, y, t, t))
        step = max(1, len(groups) // 8)
        for x, y, t_low, t_high in groups[::step]:
            text = f"{t_low:.3f}" if t_low == t_high else f"{t_low:.3f}-{t_high:.3f}"
            ax.annotate(
                text, (x, 100.0 * y), fontsize=7, xytext=(4, -10), textcoords="offset points"
            )
    if drawn:
        ax.set_ylim(-2, 102)
        ax.set_xlim(left=-0.05 * high)
        if len(reports) > 1:
            ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(
            0.5,
            0.5,
            "no enrolled passes or faces",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("false alerts per 1,000 faces seen")
    ax.set_ylabel("identification rate, % of passes")
    ax.set_title("Identification vs false alerts (labels: threshold)", fontsize=9)
    ax.grid(alpha=0.3)


def plot_report(
    report: Report,
    path: Path,
    *,
    title: str = "lfr synthetic run",
    label: str = "lfr",
    others: Mapping[str, Report] | None = None,
) -> Path:
    """Write the two-panel figure to ``path`` (PNG). ``others`` adds more runs of the same
    streams (e.g. a baseline's) to both panels, by label."""
    reports = {label: report, **(others or {})}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    _latency(
        left,
        {name: [a.latency_ms for a in r.alerts if a.counted] for name, r in reports.items()},
    )
    _sweep(right, reports)
    fig.suptitle(
        f"{title} - {report.cameras} camera(s) x {report.fps:g} fps, "
        f"{report.passes_total} passes, threshold {report.threshold:.3f}",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
