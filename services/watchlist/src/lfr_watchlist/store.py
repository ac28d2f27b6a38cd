"""What the watchlist service needs from its database, as a Protocol.

``redis_store.RedisStore`` is the real one (the only module importing ``redis``);
``testing.InMemoryStore`` is the fake the unit tests use. Every method that changes state takes
the audit events describing the change and stores them in the same transaction (an outbox that
``audit_outbox.AuditForwarder`` delivers), so a change and its audit record exist together or
not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from lfr.common.errors import LfrError
from lfr.inference import Float32Array
from lfr_watchlist.model import AuditEvent, DeploymentRecord, EntryRecord, WatchlistRecord


class CameraClaimed(LfrError):
    """Activating a deployment found one of its cameras held by another active deployment."""

    def __init__(self, camera_id: str, deployment_id: str) -> None:
        super().__init__(f"camera {camera_id!r} is held by deployment {deployment_id!r}")
        self.camera_id = camera_id
        self.deployment_id = deployment_id


class StaleState(LfrError):
    """A deployment transition found the deployment no longer in the expected state."""

    def __init__(self, deployment_id: str, actual_state: int | None) -> None:
        super().__init__(f"deployment {deployment_id!r} changed state concurrently")
        self.deployment_id = deployment_id
        self.actual_state = actual_state


class Store(Protocol):
    async def ping(self) -> bool: ...

    async def close(self) -> None: ...

    # Watch lists.
    async def create_watchlist(self, watchlist: WatchlistRecord, event: AuditEvent) -> bool:
        """Create the watch list and its vector index; False when the id is taken."""
        ...

    async def get_watchlist(self, watchlist_id: str) -> WatchlistRecord | None: ...

    async def list_watchlists(self) -> list[WatchlistRecord]:
        """In creation order."""
        ...

    async def entry_counts(self, watchlist_ids: Sequence[str]) -> list[int]: ...

    # Entries.
    async def add_entry(
        self,
        entry: EntryRecord,
        embeddings: Sequence[Float32Array],
        images: Sequence[bytes],
        event: AuditEvent,
    ) -> None:
        """Store the entry, one vector per embedding and (when given) the enrolment images,
        all in one transaction."""
        ...

    async def get_entry(self, watchlist_id: str, entry_id: str) -> EntryRecord | None: ...

    async def list_entries(self, watchlist_id: str, *, after: str, limit: int) -> list[EntryRecord]:
        """Entries in id order (= enrolment order) with ids greater than ``after``."""
        ...

    async def live_entries(self, watchlist_id: str, now: datetime) -> list[tuple[str, str]]:
        """``(entry_id, model_version)`` of every entry not expired at ``now``."""
        ...

    async def expired_entry_ids(self, watchlist_id: str, now: datetime) -> list[str]:
        """Entries with ``expires_at <= now``."""
        ...

    async def remove_entry(self, watchlist_id: str, entry_id: str, event: AuditEvent) -> bool:
        """Delete the entry's vectors, metadata and images at once; False when it is absent."""
        ...

    # Deployments.
    async def create_deployment(
        self, deployment: DeploymentRecord, events: Sequence[AuditEvent]
    ) -> bool:
        """False when the id is taken."""
        ...

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord | None: ...

    async def list_deployments(self) -> list[DeploymentRecord]:
        """In creation order."""
        ...

    async def deployment_for_camera(self, camera_id: str) -> str | None:
        """The deployment holding the camera (the one ACTIVE deployment using it), in O(1)."""
        ...

    async def overdue_deployment_ids(self, now: datetime) -> list[str]:
        """Deployments not yet ENDED whose end time is at or before ``now``."""
        ...

    async def transition_deployment(
        self, new: DeploymentRecord, *, expected_state: int, events: Sequence[AuditEvent]
    ) -> None:
        """Replace the deployment with ``new`` if it is still in ``expected_state``.

        Moving to ACTIVE claims every camera of the deployment (raises :class:`CameraClaimed`
        naming another holder); moving to ENDED releases them. Raises :class:`StaleState` when
        the stored state is not ``expected_state``.
        """
        ...

    # Audit outbox.
    async def pending_audit(self, limit: int) -> list[tuple[str, AuditEvent]]:
        """Oldest first: ``(outbox id, event)``."""
        ...

    async def ack_audit(self, outbox_ids: Sequence[str]) -> None: ...
