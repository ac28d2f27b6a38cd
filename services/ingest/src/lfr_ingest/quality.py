"""The quality gate: which faces are good enough to be sent to match, and which shot of a track
is its best."""

from __future__ import annotations

from dataclasses import dataclass

from lfr.inference.types import FaceQuality
from lfr_ingest.settings import IngestSettings

#: Where each signal stops improving the shot score (pixels, Laplacian variance).
_IDEAL_SIZE_PX = 160.0
_IDEAL_BLUR = 300.0


@dataclass(frozen=True, slots=True)
class QualityGate:
    min_face_px: float = 40.0
    min_blur: float = 20.0
    max_yaw_degrees: float = 40.0
    min_detector_score: float = 0.0

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> QualityGate:
        return cls(
            min_face_px=settings.min_face_px,
            min_blur=settings.min_blur,
            max_yaw_degrees=settings.max_yaw_degrees,
            min_detector_score=settings.min_detector_score,
        )

    def passes(self, quality: FaceQuality) -> bool:
        return (
            quality.size_px >= self.min_face_px
            and quality.blur >= self.min_blur
            and abs(quality.yaw) <= self.max_yaw_degrees
            and quality.detector_score >= self.min_detector_score
        )


def shot_score(quality: FaceQuality) -> float:
    """How good a shot is for recognition, 0..4: bigger, sharper, more frontal and more
    confidently detected is better; each term saturates so no single signal dominates."""
    size = min(max(quality.size_px, 0.0), _IDEAL_SIZE_PX) / _IDEAL_SIZE_PX
    sharp = min(max(quality.blur, 0.0), _IDEAL_BLUR) / _IDEAL_BLUR
    frontal = 1.0 - min(abs(quality.yaw), 90.0) / 90.0
    confident = min(max(quality.detector_score, 0.0), 2.0) / 2.0
    return size + sharp + frontal + confident
