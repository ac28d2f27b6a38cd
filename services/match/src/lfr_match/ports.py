"""The three things the match servicer depends on, each behind a small Protocol so unit tests use
fakes: the vector index (Redis), the camera resolver (watchlist service) and the event publisher
(alert service)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from lfr.v1 import alert_pb2

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Neighbour:
    """One enrolment vector the index found, nearest first. Carries no vector."""

    entry_id: str
    score: float  # lfr score scale (lfr.common.scores)
    category: int
    subject_ref: str


@dataclass(frozen=True)
class ActiveDeployment:
    """What match needs of the deployment active for a camera."""

    deployment_id: str
    watchlist_id: str
    index_name: str
    threshold: float
    location: str
    #: Epoch seconds; None when the deployment has no bound on that side.
    start_epoch: float | None = None
    end_epoch: float | None = None

    def covers(self, epoch_s: float) -> bool:
        """True while ``epoch_s`` is inside the deployment's window."""
        if self.start_epoch is not None and epoch_s < self.start_epoch:
            return False
        return self.end_epoch is None or epoch_s < self.end_epoch


@dataclass(frozen=True)
class Published:
    alert_id: str
    replayed: bool = False
    deduplicated: bool = False


class VectorIndex(Protocol):
    async def knn(
        self, index_name: str, vector: Vector, k: int, *, now_epoch: float
    ) -> list[Neighbour]:
        """The ``k`` nearest unexpired enrolment vectors, nearest first. Raises ``Unavailable``
        (Redis unreachable or its privacy configuration unverified), ``FailedPrecondition``
        (reason ``NO_INDEX``) or ``DeadlineExceeded``. Must leave no trace of ``vector``."""
        ...

    async def ready(self) -> bool:
        """Redis answers and has vector search."""
        ...

    async def privacy_ok(self) -> bool:
        """Redis will not retain query arguments (slowlog off, no MONITOR); re-checked often."""
        ...

    async def close(self) -> None: ...


class CameraResolver(Protocol):
    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        """The deployment active for the camera now, or None. Raises ``Unavailable`` when the
        watchlist service cannot answer."""
        ...

    async def close(self) -> None: ...


class EventPublisher(Protocol):
    async def publish(self, event: alert_pb2.MatchEvent, *, deadline_s: float) -> Published:
        """Hand the event to the alert service, retrying with backoff until ``deadline_s``
        (seconds from now) runs out; idempotent by ``event.event_id``. Raises ``Unavailable``
        when the alert service did not take it in time."""
        ...

    async def close(self) -> None: ...
