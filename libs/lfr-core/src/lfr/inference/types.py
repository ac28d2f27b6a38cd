"""What the face models give back, and the Protocol every face-analysis adapter implements.

No ``tritonclient`` here: services and their fakes depend on these types only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

#: Dimension of the face embedding (dlib ResNet v1).
EMBEDDING_DIM = 128
#: Side of the aligned RGB face chip the embedder takes (dlib 5-point alignment, padding 0.25).
CHIP_SIZE = 150
#: Identifies the embedding space (model + alignment); match events and watch-list entries carry
#: it, so vectors from different models are never compared. Equals ``face_embed``'s config
#: parameter ``model_version``.
MODEL_VERSION = "dlib-resnet-v1-5pt150"

#: uint8 pixels: an HxWx3 RGB frame, or (N, 150, 150, 3) / (150, 150, 3) RGB chips.
UInt8Array = npt.NDArray[np.uint8]
#: float32 vectors and points: (128,) / (N, 128) embeddings, (5, 2) landmarks.
Float32Array = npt.NDArray[np.float32]

#: Box in frame pixels: x1, y1, x2, y2 (x2/y2 exclusive).
Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class FaceQuality:
    """Signals the ingest quality gate uses."""

    size_px: float  #: the shorter side of the face box, in frame pixels
    blur: float  #: variance of the Laplacian of the grey chip; low = blurred (< ~100 is soft)
    yaw: float  #: rough head yaw in degrees from the landmarks; 0 = frontal
    detector_score: float  #: HOG SVM margin (face_detect) or MMOD confidence (face_detect_cnn)


@dataclass(frozen=True, slots=True)
class FaceDetection:
    """A face found in a frame, without embedding (``FaceAnalyzer.detect``)."""

    box: Box
    score: float
    landmarks: Float32Array  #: (5, 2) float32, dlib 5-point order: eye, eye, eye, eye, nose base

    def __repr__(self) -> str:
        return "FaceDetection(<face data not shown>)"


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """Everything known about one face of a frame. Memory only: never log or persist it unless
    it matched the watch list (DESIGN §1)."""

    box: Box
    landmarks: Float32Array  #: (5, 2) float32
    quality: FaceQuality
    embedding: Float32Array  #: (128,) float32, unit norm
    chip: UInt8Array  #: (150, 150, 3) uint8 RGB aligned crop

    def __repr__(self) -> str:  # never print face data (or anything derived from it) by accident
        return "DetectedFace(<face data not shown>)"


@runtime_checkable
class FaceAnalyzer(Protocol):
    """Faces in a frame, and embeddings of chips. ``image``: encoded JPEG/PNG bytes, or an
    HxWx3 uint8 RGB array. Every call has a deadline (``timeout_s``, else the adapter's default).

    Raises ``lfr.common.errors`` types: ``InvalidArgument`` (``reason`` ``EMPTY_IMAGE``,
    ``BAD_IMAGE``, ``IMAGE_TOO_LARGE``, ``BAD_CHIPS``, ``BAD_REQUEST``), ``Unavailable``,
    ``DeadlineExceeded``.
    """

    async def analyze(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[DetectedFace]: ...

    async def detect(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[FaceDetection]: ...

    async def embed_chips(
        self, chips: UInt8Array, *, timeout_s: float | None = None
    ) -> Float32Array: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...
