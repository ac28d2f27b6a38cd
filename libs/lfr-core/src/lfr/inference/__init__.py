"""Face detection and embedding: typed results, the ``FaceAnalyzer`` Protocol, and the Triton
adapter (:mod:`lfr.inference.triton`, the only module importing ``tritonclient``).

``TritonFaceAnalyzer`` and ``map_triton_error`` are imported lazily, so code that needs only the
types (services' domain logic, fakes) does not pay for loading ``tritonclient``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lfr.inference.types import (
    CHIP_SIZE,
    EMBEDDING_DIM,
    MODEL_VERSION,
    Box,
    DetectedFace,
    FaceAnalyzer,
    FaceDetection,
    FaceQuality,
    Float32Array,
    UInt8Array,
)

if TYPE_CHECKING:
    from lfr.inference.triton import TritonFaceAnalyzer, map_triton_error

__all__ = [
    "CHIP_SIZE",
    "EMBEDDING_DIM",
    "MODEL_VERSION",
    "Box",
    "DetectedFace",
    "FaceAnalyzer",
    "FaceDetection",
    "FaceQuality",
    "Float32Array",
    "TritonFaceAnalyzer",
    "UInt8Array",
    "map_triton_error",
]

_LAZY = {"TritonFaceAnalyzer", "map_triton_error"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from lfr.inference import triton

        return getattr(triton, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
