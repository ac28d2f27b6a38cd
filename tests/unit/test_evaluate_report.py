"""Report outputs (JSON, table, plot) and the ``lfr evaluate`` command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from lfr.common import scores
from lfr_cli.evaluate.cli import parse_thresholds
from lfr_cli.evaluate.dataset import load_dataset
from lfr_cli.evaluate.report import build_report, render_table, to_json, write_outputs
from lfr_cli.main import build_parser
from lfr_cli.main import main as lfr_main
from tests.unit.test_evaluate_run import MIXED, evaluate, write_images


async def test_json_table_and_plot(tmp_path: Path) -> None:
    write_images(tmp_path / "data", MIXED)
    run, *_ = await evaluate(load_dataset(tmp_path / "data"))
    report = build_report(run, [0.5, 0.9], 0.001, model_version="fake-v1")

    doc = to_json(report)
    assert doc["model_version"] == "fake-v1"
    assert doc["searches"] == {"mated": 3, "nonmated": 2}
    assert doc["watchlist"]["entries"] == 3 and doc["watchlist"]["not_enrolled"] == ["Dan"]
    assert doc["images"]["no_usable_face_counts"] == {"FACE_TOO_SMALL": 1, "NO_FACE": 3}
    assert doc["images"]["failure_counts"] == {"BAD_IMAGE": 2}
    assert {p["path"] for p in doc["images"]["failures"]} == {
        "people/Cat/1.jpg",
        "distractors/Gus.jpg",
    }
    # The sweep holds the asked thresholds plus the configured default and floor.
    thresholds = [p["threshold"] for p in doc["sweep"]]
    assert thresholds == sorted({0.5, 0.9, scores.DEFAULT_THRESHOLD, scores.THRESHOLD_FLOOR})
    assert doc["configured"]["default_threshold"] == scores.DEFAULT_THRESHOLD
    assert doc["configured"]["default"]["tpir"] == 1.0
    assert doc["target"]["resolvable"] is False  # 2 non-mated searches cannot show 0.001
    assert len(doc["rank1_scores"]["mated"]) == 3 and len(doc["rank1_scores"]["nonmated"]) == 2
    assert "probes" not in doc  # who each probe was is written only when asked
    assert {p["identity"] for p in to_json(report, per_probe=True)["probes"]} == {
        "Ann",
        "Bob",
        "Eve",
        "Hal",
    }
    json.dumps(doc)  # serialisable as is

    table = render_table(report)
    assert "3 identities enrolled" in table and "1 could not be enrolled" in table
    assert "3 mated, 2 non-mated" in table
    assert "distractors/Fay.jpg (non-mated probe): NO_FACE" in table
    assert "people/Cat/1.jpg (enrolment): BAD_IMAGE" in table
    assert "<- default" in table and "<- floor" in table
    assert "caution: 2 non-mated searches cannot show an FPIR of 0.001" in table

    outputs = write_outputs(report, tmp_path / "out")
    assert outputs.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(outputs.json_path.read_text())["searches"]["mated"] == 3
    assert outputs.table_path.read_text().startswith("lfr evaluate:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.6:0.7:0.05", [0.6, 0.65, 0.7]),
        ("0.8", [0.8]),
        ("0.7, 0.75,0.8", [0.7, 0.75, 0.8]),
    ],
)
def test_parse_thresholds(text: str, expected: list[float]) -> None:
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "0.9:0.1:0.1", "0.1:0.2:0", "1.5", "0.1:0.2"])
def test_parse_thresholds_refuses_nonsense(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_thresholds(text)


def test_evaluate_is_an_lfr_subcommand() -> None:
    args = build_parser().parse_args(["evaluate", "photos", "--target-fpir", "0.01"])
    assert args.folder == Path("photos") and args.target_fpir == 0.01
    assert callable(args.handler)


def test_empty_folder_is_reported_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert lfr_main(["evaluate", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds no images" in err and "people/<identity>" in err


def test_bad_target_fpir_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "x", "--target-fpir", "2"])
    assert "rate between 0 and 1" in capsys.readouterr().err


async def test_a_run_without_probes_still_reports(tmp_path: Path) -> None:
    # One identity with one photo: enrolled, nothing left to search.
    write_images(tmp_path / "data", {"people/Solo/1.jpg": b"face:Solo:1"})
    run, *_ = await evaluate(load_dataset(tmp_path / "data"))
    report = build_report(run, [0.9], 0.001)
    doc = to_json(report)
    assert doc["searches"] == {"mated": 0, "nonmated": 0}
    assert doc["configured"]["default"]["tpir"] is None and doc["target"]["threshold"] is None
    assert doc["det"] == []
    table = render_table(report)
    assert "no non-mated probes" in table and "only one photo" in table
    assert " n/a " in table
    outputs = write_outputs(report, tmp_path / "out")
    assert outputs.plot_path.stat().st_size > 0
