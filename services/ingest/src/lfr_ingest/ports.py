"""What the ingest pipeline depends on, each behind a small Protocol so unit tests use fakes.

* faces: ``lfr.inference.FaceAnalyzer`` (Triton; one round trip per frame)
* match decisions: :class:`MatchClient` (match service)
* which deployment covers a camera: :class:`DeploymentResolver` (watchlist service)
* pull sources: :class:`VideoOpener` / :class:`VideoStream` (OpenCV)
* aggregate counts: ``lfr.common.audit.AuditSink`` (alert service)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from lfr.v1 import match_pb2

#: An H x W x 3 uint8 RGB frame.
RgbFrame = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class ActiveDeployment:
    """The deployment that covers a camera now: what ingest needs of it (ids and window)."""

    deployment_id: str
    #: Epoch seconds; None when unbounded on that side.
    end_epoch: float | None = None

    def covers(self, epoch_s: float) -> bool:
        return self.end_epoch is None or epoch_s < self.end_epoch


class DeploymentResolver(Protocol):
    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        """The active deployment that includes ``camera_id`` now, or None. Raises ``NotFound``
        (reason ``UNKNOWN_CAMERA``) when the camera is in no deployment at all, ``Unavailable`` /
        ``DeadlineExceeded`` when the answer is unknown (ingest then processes nothing)."""
        ...


class MatchClient(Protocol):
    async def match(self, request: match_pb2.MatchRequest) -> match_pb2.MatchResponse:
        """The decision on one probe. Raises ``Unavailable`` / ``DeadlineExceeded`` when none came
        back (the same ``request_id`` may be retried), ``FailedPrecondition`` when refused."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class VideoStream(Protocol):
    """An opened video (blocking calls; ingest runs them in a worker thread)."""

    def grab(self) -> bool:
        """Advance to the next frame; False at the end or when the stream broke."""
        ...

    def retrieve(self) -> RgbFrame | None:
        """Decode the grabbed frame as RGB; None when it cannot be decoded."""
        ...

    def position_s(self) -> float | None:
        """Where the grabbed frame lies in the video (seconds), when the container knows."""
        ...

    def fps(self) -> float:
        """Nominal frame rate; 0 when unknown."""
        ...

    def release(self) -> None: ...


class VideoOpener(Protocol):
    def open(self, uri: str, *, open_timeout_s: float, read_timeout_s: float) -> VideoStream:
        """Open a file or stream (blocking). Raises ``Unavailable`` when it cannot be opened."""
        ...
