"""Sampling to a camera's target frame rate, by capture time."""

from __future__ import annotations


class Sampler:
    """Keeps frames on a grid of ``1 / target_fps`` seconds of capture time. A frame slightly
    early (5 ms, or a tenth of the period when shorter) still counts, as cameras jitter; after a
    gap the grid restarts at the next frame. ``target_fps`` 0 keeps every frame."""

    def __init__(self, target_fps: float) -> None:
        if target_fps < 0:
            raise ValueError("target_fps must be >= 0")
        self.target_fps = target_fps
        self._period = 1.0 / target_fps if target_fps > 0 else 0.0
        self._slack = min(0.005, self._period / 10)
        self._next_due: float | None = None

    def accept(self, capture_s: float) -> bool:
        if self._period == 0.0:
            return True
        due = self._next_due
        if due is not None and capture_s < due - self._slack:
            return False
        if due is not None and capture_s - due < self._period:
            self._next_due = due + self._period  # stay on the grid
        else:
            self._next_due = capture_s + self._period  # first frame, or after a gap
        return True
