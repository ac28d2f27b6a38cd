"""``lfr synth`` and ``lfr demo`` on the command line (no suite needed for these)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from lfr_cli.main import build_parser, main
from lfr_cli.synth.suite import running_suite


def test_synth_and_demo_are_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["synth", "run", "--cameras", "2", "--size", "320x180", "--face-px", "40,60", "--sweep"]
    )
    assert (args.cameras, args.size, args.face_px, args.sweep) == (
        2,
        (320, 180),
        (40.0, 60.0),
        True,
    )
    assert args.mode == "push" and args.min_repeat_gap == 60.0
    demo = parser.parse_args(["demo", "--fps", "2"])
    assert demo.fps == 2.0 and callable(demo.handler)


@pytest.mark.parametrize("bad", [["--size", "640"], ["--face-px", "a,b"], ["--mode", "carrier"]])
def test_bad_arguments_are_refused(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["synth", "run", *bad])
    assert exited.value.code == 2
    assert "error" in capsys.readouterr().err


def test_bad_stream_settings_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["synth", "render", "--out", str(tmp_path), "--fps", "0"])
    assert code == 2
    assert "bad stream settings: fps 0.0" in capsys.readouterr().err


def test_render_writes_videos_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "synth",
            "render",
            "--out",
            str(out),
            "--cameras",
            "2",
            "--fps",
            "2",
            "--size",
            "320x180",
            "--face-px",
            "40,60",
            "--pass-seconds",
            "1.5",
            "--locate",
            "centre",
        ]
    )
    assert code == 0
    truth = json.loads((out / "truth.json").read_text())
    frames = truth["scenario"]["frames_per_camera"]
    assert {p["identity"] for p in truth["scenario"]["passes"]} == {
        "grace_hopper",
        "astronaut",
        "cameraman",
    }
    for cam in ("synth-cam-1", "synth-cam-2"):
        video = cv2.VideoCapture(str(out / f"{cam}.avi"))
        assert video.get(cv2.CAP_PROP_FRAME_COUNT) == frames
        assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FPS)) == (320, 2)
        video.release()
        assert len(truth["truth"]["cameras"][cam]) == frames


def test_running_suite_follows_the_port_settings() -> None:
    suite = running_suite({"LFR_INGEST_PORT": "6001", "LFR_TRITON_GRPC_PORT": "6002"})
    assert suite.endpoints.ingest == "127.0.0.1:6001"
    assert suite.triton_url == "127.0.0.1:6002"
    assert suite.endpoints.alert.endswith(":50054") and suite.runtime is None
