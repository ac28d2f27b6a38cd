"""Streams as files: one video per camera (for ingest's pull path or any other tool) and the
ground truth next to them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import cv2

from lfr.common.errors import ConfigError
from lfr_cli.synth.scene import Renderer, Scenario
from lfr_cli.synth.truth import GroundTruth

__all__ = ["CODECS", "write_ground_truth", "write_videos"]

#: fourcc and file suffix; MJPG/AVI is built into every OpenCV build (no FFmpeg codec needed).
CODECS: Final = {"mjpg": ("MJPG", ".avi"), "mp4v": ("mp4v", ".mp4")}


def write_videos(renderer: Renderer, out_dir: Path, *, codec: str = "mjpg") -> dict[str, Path]:
    """``<out_dir>/<camera>.avi`` for every camera; returns camera → path."""
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; one of {', '.join(CODECS)}")
    fourcc, suffix = CODECS[codec]
    scenario: Scenario = renderer.scenario
    cfg = scenario.config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for cam in scenario.camera_ids:
        path = out_dir / f"{cam}{suffix}"
        writer = cv2.VideoWriter(
            str(path), cv2.VideoWriter.fourcc(*fourcc), cfg.fps, (cfg.width, cfg.height)
        )
        if not writer.isOpened():
            raise ConfigError(f"OpenCV cannot write {path} with codec {fourcc}")
        try:
            for frame in range(scenario.frames_per_camera):
                writer.write(cv2.cvtColor(renderer.render(cam, frame), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        paths[cam] = path
    return paths


def write_ground_truth(truth: GroundTruth, scenario: Scenario, path: Path) -> Path:
    """Ground truth and the plan as one JSON file (who, when, where; boxes only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"scenario": scenario.to_json(), "truth": truth.to_json()}
    path.write_text(json.dumps(payload, indent=1) + "\n")
    return path
