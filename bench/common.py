"""What the benchmark scripts share: the machine line, percentiles, and the in-process dlib
baseline (what Triton's ``face_detect`` / ``face_embed`` / ``face_analyze`` do, done with dlib
directly, with the same weights and parameters).

The scripts run as ``python bench/bench_<x>.py``, so this folder is on ``sys.path`` and they
``import common``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import dlib
import numpy as np
import numpy.typing as npt

UInt8 = npt.NDArray[np.uint8]


# --- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    """``lscpu``'s "Model name" (what docs/PERFORMANCE.md records), else what Python knows."""
    fallback = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return fallback
    for line in lscpu.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return fallback


DLIB = f"dlib {dlib.__version__}"


def machine(*extra: str) -> str:
    """``<cpu model>, <n> cores, Python <x.y.z>`` and any ``extra`` parts (e.g. ``dlib 19.24``)."""
    parts = [cpu_model(), f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    return ", ".join([*parts, *extra])


# --- CPU accounting ------------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (field 3 onwards), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (Triton: the server and its backend stubs)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by these processes, each counted once however
    often it is listed (a Triton started here is also in this process's tree)."""
    total = 0
    for pid in set(pids):
        if fields := _stat(pid):
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


# --- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, linear interpolation as numpy's default; the 50th is the
    median); NaN when there are no values."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, np.float64), q))


# --- the in-process dlib baseline ----------------------------------------------------------------


def rgb(encoded: bytes) -> UInt8:
    """Decode JPEG/PNG bytes to RGB, as ``face_detect`` does."""
    bgr = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


class InProcess:
    """What face_detect / face_embed / face_analyze do, done here with dlib directly (same
    weights and parameters: HOG with ``upsample``, 5-point landmarks, 150 px chips with
    padding 0.25, the blur signal, ResNet embeddings)."""

    def __init__(self, upsample: int = 1) -> None:
        spec = importlib.util.find_spec("face_recognition_models")
        assert spec is not None and spec.submodule_search_locations
        weights = Path(next(iter(spec.submodule_search_locations))) / "models"
        self.upsample = upsample
        self.hog = dlib.get_frontal_face_detector()
        self.sp = dlib.shape_predictor(str(weights / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = dlib.face_recognition_model_v1(
            str(weights / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def detect(self, frame: UInt8) -> list[UInt8]:
        rects, _, _ = self.hog.run(frame, self.upsample, 0.0)
        shapes = dlib.full_object_detections()
        for rect in rects:
            shapes.append(self.sp(frame, rect))
        chips: list[UInt8] = list(dlib.get_face_chips(frame, shapes, size=150, padding=0.25))
        for chip in chips:  # the quality signal face_detect computes
            cv2.Laplacian(cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
        return chips

    def embed(self, chips: list[UInt8]) -> npt.NDArray[np.float32]:
        vectors = np.asarray(self.encoder.compute_face_descriptor(chips), np.float64)
        unit: npt.NDArray[np.float32] = (
            vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        ).astype(np.float32)
        return unit

    def analyze(self, frame: UInt8) -> npt.NDArray[np.float32]:
        chips = self.detect(frame)
        return self.embed(chips) if chips else np.zeros((0, 128), np.float32)
