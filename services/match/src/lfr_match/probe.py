"""What makes a probe acceptable, and the event id a match is published under.

Error messages name the problem (field, index, expected shape) but never a value taken from the
embedding: they reach logs and callers, and the probe may be a stranger's face.
"""

from __future__ import annotations

import uuid

import numpy as np

from lfr.common.errors import InvalidArgument
from lfr.common.schema import EMBEDDING_DIM
from lfr.v1 import match_pb2
from lfr_match.ports import Vector

#: Namespace of match event ids (uuid5), fixed forever: changing it would break idempotency of
#: retries across a deploy.
EVENT_NAMESPACE = uuid.UUID("6f1d8b3e-5a57-4c11-9a43-2f7b1f0c9e21")
MAX_ID_CHARS = 256


def event_id(deployment_id: str, request_id: str) -> str:
    """Deterministic in (deployment, request): a retried probe publishes under the same id."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{deployment_id}\x1f{request_id}"))


def validate(
    request: match_pb2.MatchRequest,
    *,
    norm_tolerance: float,
    max_top_k: int,
    max_crop_bytes: int,
) -> Vector:
    """Check the request and return its embedding as float32; raises ``InvalidArgument``."""
    if not request.request_id:
        raise InvalidArgument(
            "request_id is required (the idempotency key)", reason="NO_REQUEST_ID"
        )
    if len(request.request_id) > MAX_ID_CHARS:
        raise InvalidArgument(
            f"request_id is longer than {MAX_ID_CHARS} characters", reason="BAD_REQUEST_ID"
        )
    if not request.camera_id:
        raise InvalidArgument("camera_id is required", reason="NO_CAMERA_ID")
    if len(request.camera_id) > MAX_ID_CHARS:
        raise InvalidArgument(
            f"camera_id is longer than {MAX_ID_CHARS} characters", reason="BAD_CAMERA_ID"
        )
    count = len(request.embedding)
    if count != EMBEDDING_DIM:
        raise InvalidArgument(
            f"embedding has {count} values; expected {EMBEDDING_DIM}", reason="BAD_EMBEDDING"
        )
    vector = np.asarray(request.embedding, dtype=np.float32)
    finite = np.isfinite(vector)
    if not finite.all():
        first = int(np.argmin(finite))
        raise InvalidArgument(
            f"embedding value at index {first} is not a finite number", reason="BAD_EMBEDDING"
        )
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    if abs(norm - 1.0) > norm_tolerance:
        raise InvalidArgument(
            f"embedding is not L2-normalised (its norm is outside 1 ± {norm_tolerance})",
            reason="BAD_EMBEDDING",
        )
    if request.top_k > max_top_k:
        raise InvalidArgument(f"top_k must be at most {max_top_k}", reason="BAD_TOP_K")
    if len(request.crop_jpeg) > max_crop_bytes:
        raise InvalidArgument(
            f"crop_jpeg is larger than {max_crop_bytes} bytes", reason="CROP_TOO_LARGE"
        )
    return vector
