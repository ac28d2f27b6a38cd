"""From enrolment images to embeddings: every image must hold exactly one usable face.

Errors name the image (``images[i]``) and carry a typed reason: ``NO_FACE``,
``MULTIPLE_FACES``, ``FACE_TOO_SMALL``, ``BAD_IMAGE`` (or the analyzer's own image reason, such
as ``IMAGE_TOO_LARGE``). Messages hold counts and sizes only, never face data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from lfr.common.errors import InvalidArgument, LfrError
from lfr.inference import EMBEDDING_DIM, DetectedFace, FaceAnalyzer, Float32Array

NO_FACE = "NO_FACE"
MULTIPLE_FACES = "MULTIPLE_FACES"
FACE_TOO_SMALL = "FACE_TOO_SMALL"
BAD_IMAGE = "BAD_IMAGE"


def select_face(faces: Sequence[DetectedFace], index: int, *, min_face_px: int) -> DetectedFace:
    """The one usable face of image ``index``. A face below ``min_face_px`` is not usable, so
    a small face in the background does not make a portrait ambiguous."""
    usable = [f for f in faces if f.quality.size_px >= min_face_px]
    if len(usable) == 1:
        return usable[0]
    if len(usable) > 1:
        raise InvalidArgument(
            f"images[{index}] holds {len(usable)} faces; an enrolment image must hold exactly one",
            reason=MULTIPLE_FACES,
        )
    if faces:
        largest = max(f.quality.size_px for f in faces)
        raise InvalidArgument(
            f"images[{index}]: the face is {largest:.0f} px, smaller than the minimum "
            f"{min_face_px} px",
            reason=FACE_TOO_SMALL,
        )
    raise InvalidArgument(f"images[{index}] holds no face", reason=NO_FACE)


def unit_embedding(face: DetectedFace, index: int) -> Float32Array:
    vector = np.asarray(face.embedding, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector)) if vector.size == EMBEDDING_DIM else 0.0
    if not np.isfinite(norm) or norm == 0.0:
        raise LfrError(
            f"images[{index}]: the model returned an unusable embedding", reason="MODEL_ERROR"
        )
    return vector / norm


async def embed_images(
    analyzer: FaceAnalyzer,
    images: Sequence[bytes],
    *,
    min_face_px: int,
    timeout_s: float,
) -> list[Float32Array]:
    """One unit embedding per image, or the error of the first image that fails."""
    for i, image in enumerate(images):
        if not image:
            raise InvalidArgument(f"images[{i}] is empty", reason=BAD_IMAGE)
    # All images in flight at once (Triton batches them); errors are reported in image order.
    results = await asyncio.gather(
        *(analyzer.analyze(image, timeout_s=timeout_s) for image in images),
        return_exceptions=True,
    )
    embeddings: list[Float32Array] = []
    for i, result in enumerate(results):
        if isinstance(result, InvalidArgument):
            raise InvalidArgument(f"images[{i}]: {result.message}", reason=result.reason)
        if isinstance(result, BaseException):
            raise result
        embeddings.append(unit_embedding(select_face(result, i, min_face_px=min_face_px), i))
    return embeddings
