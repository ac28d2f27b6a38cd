"""Figures of a run against the ground truth: which alert is true, rates, sweep, outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lfr_cli.synth.plot import plot_report
from lfr_cli.synth.record import AlertLog, FrameLog, RunRecord
from lfr_cli.synth.report import compute_report, format_report, percentiles
from lfr_cli.synth.scene import FaceTruth
from lfr_cli.synth.truth import GroundTruth, PassInfo

CAM = "cam-1"
T0 = 1_700_000_000_000_000_000
HOPPER_BOX = (10.0, 10.0, 50.0, 50.0)
ASTRONAUT_BOX = (60.0, 10.0, 100.0, 50.0)


def frame_ns(frame: int) -> int:
    return T0 + frame * 250_000_000  # 4 fps


@pytest.fixture
def truth() -> GroundTruth:
    frames: list[list[FaceTruth]] = []
    for f in range(12):
        faces = []
        if f < 5:
            faces.append(FaceTruth("grace_hopper", 0, HOPPER_BOX, True))
        if 5 <= f < 10:
            faces.append(FaceTruth("astronaut", 1, ASTRONAUT_BOX, True))
        frames.append(faces)
    passes = {
        0: PassInfo(0, CAM, "grace_hopper", 0, 5, 5),
        1: PassInfo(1, CAM, "astronaut", 5, 10, 5),
    }
    return GroundTruth(4.0, 120, 60, {CAM: frames}, passes)


def alert(
    alert_id: str,
    frame: int,
    box: tuple[float, float, float, float],
    score: float,
    latency_ms: float,
    *,
    capture_ns: int | None = None,
) -> AlertLog:
    capture = frame_ns(frame) if capture_ns is None else capture_ns
    return AlertLog(
        alert_id=alert_id,
        camera_id=CAM,
        entry_id="e1",
        subject_ref="grace_hopper",
        identity="grace_hopper",
        score=score,
        capture_ns=capture,
        received_ns=capture + int(latency_ms * 1e6),
        box=box,
    )


@pytest.fixture
def record() -> RunRecord:
    rec = RunRecord(mode="push", fps=4.0, camera_ids=[CAM], threshold=0.70)
    rec.enrolled = {"grace_hopper": "e1"}
    rec.frames = [
        FrameLog(
            CAM,
            f,
            f + 1,
            frame_ns(f),
            status="PROCESSED",
            latency_ms=100.0 + f,
            result_ns=frame_ns(f) + 10,
        )
        for f in range(12)
    ]
    rec.frames[11].status = "DROPPED_BACKPRESSURE"
    rec.started_ns, rec.ended_ns = T0, T0 + 3_000_000_000
    rec.alerts = [
        alert("a1", 2, (12.0, 11.0, 49.0, 52.0), 0.90, 300.0),  # Hopper: true
        alert("a2", 3, (11.0, 10.0, 50.0, 50.0), 0.85, 500.0),  # Hopper again: a repeat
        alert("a3", 6, (61.0, 12.0, 99.0, 50.0), 0.75, 400.0),  # the astronaut as Hopper
        alert("a4", 11, (10.0, 10.0, 50.0, 50.0), 0.72, 200.0),  # nobody there
    ]
    rec.stats = {
        CAM: {
            "faces_detected": 10,
            "frames_processed": 11,
            "frames_dropped_backpressure": 1,
            "frames_in": 12,
        }
    }
    return rec


def test_alerts_are_judged_against_the_truth(truth: GroundTruth, record: RunRecord) -> None:
    report = compute_report(truth, record)
    judged = {a.alert_id: (a.true, a.pass_id, a.on_screen) for a in report.alerts}
    assert judged == {
        "a1": (True, 0, "grace_hopper"),
        "a2": (True, 0, "grace_hopper"),
        "a3": (False, 1, "astronaut"),
        "a4": (False, None, None),
    }
    assert (report.passes_enrolled, report.passes_identified) == (1, 1)
    assert report.identification_rate == 1.0
    assert (report.true_alerts, report.false_alerts, report.duplicate_alerts) == (2, 2, 1)
    assert report.faces_seen == 10 and report.faces_seen_source == "ingest faces_detected"
    assert report.false_alerts_per_1000_faces == pytest.approx(200.0)
    assert report.alert_latency_ms["p50"] == pytest.approx(350.0)
    assert report.alert_latency_ms["max"] == pytest.approx(500.0)
    assert report.frames_processed == 11 and report.frames_sent == 12
    assert report.frames_per_s == pytest.approx(11 / 3.0)
    assert report.drops["backpressure"] == 1
    (hopper, astronaut) = report.passes
    assert hopper.identified and hopper.best_score == pytest.approx(0.90)
    assert not astronaut.enrolled and not astronaut.identified


def test_sweep_counts_only_alerts_at_or_above_each_threshold(
    truth: GroundTruth, record: RunRecord
) -> None:
    sweep = {round(p.threshold, 2): p for p in compute_report(truth, record).sweep}
    assert min(sweep) == 0.70 and max(sweep) == 1.0
    assert (sweep[0.70].identified_passes, sweep[0.70].false_alerts) == (1, 2)
    assert sweep[0.73].false_alerts == 1
    assert sweep[0.76].false_alerts == 0 and sweep[0.76].identification_rate == 1.0
    assert sweep[0.90].identified_passes == 1
    assert sweep[0.91].identified_passes == 0 and sweep[0.91].identification_rate == 0.0
    record.threshold = float(np.float32(0.70))  # as it arrives over gRPC: 0.699999988
    assert compute_report(truth, record).sweep[0].threshold == 0.70
    rates = [p.identification_rate for p in sweep.values()]
    assert rates == sorted(rates, reverse=True)  # type: ignore[type-var]


def test_an_operating_threshold_above_the_deployments_counts_fewer_alerts(
    truth: GroundTruth, record: RunRecord
) -> None:
    report = compute_report(truth, record, threshold=0.88)
    assert (report.threshold, report.deployment_threshold) == (0.88, 0.70)
    assert (report.true_alerts, report.false_alerts, report.duplicate_alerts) == (1, 0, 0)
    assert report.alerts_total == 1 and report.alert_latency_ms["count"] == 1
    assert report.passes[0].alert_ids == ["a1"]
    assert [a.alert_id for a in report.alerts if not a.counted] == ["a2", "a3", "a4"]
    assert report.sweep[0].threshold == 0.70  # the sweep still starts at the deployment's
    below = compute_report(truth, record, threshold=0.5)
    assert below.threshold == 0.70  # alerts under the deployment's threshold never existed


def test_faces_seen_falls_back_to_the_truth(truth: GroundTruth, record: RunRecord) -> None:
    record.stats = {}
    report = compute_report(truth, record)
    assert report.faces_seen == 10  # visible faces in the 11 processed frames
    assert report.faces_seen_source.startswith("ground truth")


def test_pull_mode_looks_around_the_estimated_frame(truth: GroundTruth) -> None:
    rec = RunRecord(mode="pull", fps=4.0, camera_ids=[CAM], threshold=0.7)
    rec.enrolled = {"grace_hopper": "e1"}
    rec.started_ns = T0 - 400_000_000  # ingest stamps frames a little after the source starts
    rec.ended_ns = T0 + 3_000_000_000
    rec.alerts = [alert("p1", 1, HOPPER_BOX, 0.9, 250.0, capture_ns=frame_ns(6))]
    rec.ingest_latency_ms = {
        CAM: {"count": 9.0, "p50": 120.0, "p95": 300.0, "p99": 310.0, "max": 320.0}
    }
    report = compute_report(truth, rec)
    assert report.alerts[0].true and report.passes_identified == 1
    # Video time is not wall time: no alert latency, but ingest's frame latency.
    assert report.alert_latency_ms["count"] == 0
    assert any("alert latency is not measured" in n for n in report.notes)
    assert report.frame_latency_ms["p50"] == 120.0


def test_an_unenrolled_persons_passes_do_not_count(truth: GroundTruth, record: RunRecord) -> None:
    record.enrolled = {}
    report = compute_report(truth, record)
    assert report.passes_enrolled == 0 and report.identification_rate is None


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles([]) == {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    assert percentiles([1.0, 2.0, 3.0])["p50"] == 2.0


def test_outputs_table_json_plot(truth: GroundTruth, record: RunRecord, tmp_path: Path) -> None:
    record.notes.append("something happened")
    report = compute_report(truth, record)
    table = format_report(report)
    assert "identification rate" in table and "100.0 %  (1/1 passes)" in table
    assert re.search(r"alerts: true / false / repeat\s+2 / 2 / 1\n", table)
    assert "note: something happened" in table
    data = json.loads(json.dumps(report.to_json()))
    assert data["passes"][0]["identified"] is True
    assert "passes" not in report.summary_json() and "alerts" not in report.summary_json()
    other = compute_report(truth, record, threshold=0.8)
    png = plot_report(report, tmp_path / "out" / "plot.png", others={"baseline": other})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_record_and_truth_survive_json(truth: GroundTruth, record: RunRecord) -> None:
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    truth_again = GroundTruth.from_json(json.loads(json.dumps(truth.to_json())))
    assert truth_again.passes == truth.passes
    assert truth_again.frames[CAM][3] == truth.frames[CAM][3]
