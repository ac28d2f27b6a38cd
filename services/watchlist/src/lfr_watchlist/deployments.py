"""Deployments: authorised, time-bounded uses of a watch list on cameras (DESIGN invariant 4).

States: CREATED -> ACTIVE -> ENDED, or CREATED -> ENDED. A deployment past its end time is
ENDED by a background check and, so that no reader ever sees it active, also by any read that
finds it overdue. Starting claims the deployment's cameras in one transaction: a camera is held
by at most one ACTIVE deployment, and the camera -> deployment map answers ``resolve`` in O(1).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import datetime

from lfr.common import audit
from lfr.common.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from lfr.common.logging import get_logger
from lfr.common.schema import index_name
from lfr.common.tasks import raise_if_cancelling
from lfr_watchlist.model import (
    ACTIVE,
    CREATED,
    ENDED,
    Clock,
    DeploymentRecord,
    audit_event,
    new_id,
    snapshot_of,
)
from lfr_watchlist.requests import DeploymentRequest
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.store import CameraClaimed, StaleState, Store

log = get_logger("lfr.watchlist.deployments")

#: Actor of the records written when a deployment reaches its end time.
SCHEDULER_ACTOR = "system:scheduler"
_MAX_ATTEMPTS = 5


class DeploymentManager:
    def __init__(
        self,
        store: Store,
        settings: WatchlistSettings,
        *,
        clock: Clock,
        audit_written: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._audit_written = audit_written

    async def create(self, request: DeploymentRequest) -> DeploymentRecord:
        if await self._store.get_watchlist(request.watchlist_id) is None:
            raise NotFound(
                f"watch list {request.watchlist_id!r} not found", reason="WATCHLIST_NOT_FOUND"
            )
        now = self._clock()
        record = DeploymentRecord(
            deployment_id=request.deployment_id or new_id("dep"),
            authorising_officer=request.authorising_officer,
            purpose=request.purpose,
            location=request.location,
            camera_ids=request.camera_ids,
            watchlist_id=request.watchlist_id,
            threshold=request.threshold,
            start_time=request.start_time,
            end_time=request.end_time,
            state=CREATED,
            created_at=now,
        )
        officer, dep_id = record.authorising_officer, record.deployment_id
        events = [
            audit_event(
                audit.DEPLOYMENT_AUTHORISED,
                officer,
                now,
                deployment_id=dep_id,
                authorising_officer=officer,
                purpose=record.purpose,
                location=record.location,
                camera_ids=",".join(record.camera_ids),
                watchlist_id=record.watchlist_id,
                threshold=f"{record.threshold:g}",
                start_time=record.start_time.isoformat(),
                end_time=record.end_time.isoformat(),
            ),
            audit_event(
                audit.THRESHOLD_SET,
                officer,
                now,
                deployment_id=dep_id,
                watchlist_id=record.watchlist_id,
                threshold=f"{record.threshold:g}",
                source="default" if request.threshold_defaulted else "requested",
                floor=f"{self._settings.threshold_floor:g}",
            ),
        ]
        if not await self._store.create_deployment(record, events):
            raise AlreadyExists(f"deployment {dep_id!r} already exists")
        self._audit_written()
        return record

    async def get(self, deployment_id: str) -> DeploymentRecord:
        record = await self._store.get_deployment(deployment_id)
        if record is None:
            raise NotFound(f"deployment {deployment_id!r} not found", reason="DEPLOYMENT_NOT_FOUND")
        return await self._end_if_overdue(record)

    async def list_deployments(self, state: int = 0) -> list[DeploymentRecord]:
        await self.end_overdue()
        records = await self._store.list_deployments()
        return [r for r in records if not state or r.state == state]

    async def start(self, deployment_id: str, *, requested_by: str) -> DeploymentRecord:
        """Start within the window: snapshot the watch list and claim the cameras."""
        for _ in range(_MAX_ATTEMPTS):
            record = await self.get(deployment_id)
            if record.state == ACTIVE:
                return record  # a retried start: nothing more to do
            if record.state == ENDED:
                raise FailedPrecondition(
                    f"deployment {deployment_id!r} has ended", reason="DEPLOYMENT_ENDED"
                )
            now = self._clock()
            if now < record.start_time:
                raise FailedPrecondition(
                    f"deployment {deployment_id!r} may not start before its window opens at "
                    f"{record.start_time.isoformat()}",
                    reason="OUTSIDE_WINDOW",
                )
            if await self._store.get_watchlist(record.watchlist_id) is None:
                raise FailedPrecondition(
                    f"watch list {record.watchlist_id!r} of deployment {deployment_id!r} no "
                    "longer exists",
                    reason="WATCHLIST_NOT_FOUND",
                )
            snapshot = snapshot_of(await self._store.live_entries(record.watchlist_id, now), now)
            started = dataclasses.replace(record, state=ACTIVE, started_at=now, snapshot=snapshot)
            events = [
                audit_event(
                    audit.DEPLOYMENT_STARTED,
                    requested_by,
                    now,
                    deployment_id=deployment_id,
                    watchlist_id=record.watchlist_id,
                    index_name=index_name(record.watchlist_id),
                    camera_ids=",".join(record.camera_ids),
                    threshold=f"{record.threshold:g}",
                    end_time=record.end_time.isoformat(),
                ),
                audit_event(
                    audit.WATCHLIST_COMPILED,
                    requested_by,
                    now,
                    deployment_id=deployment_id,
                    watchlist_id=record.watchlist_id,
                    entry_count=str(snapshot.entry_count),
                    content_hash=snapshot.content_hash,
                    entry_ids=",".join(snapshot.entry_ids),
                ),
            ]
            try:
                await self._store.transition_deployment(
                    started, expected_state=CREATED, events=events
                )
            except StaleState:
                continue  # started or stopped concurrently: look again
            except CameraClaimed as claim:
                if await self._release_if_overdue(claim.deployment_id):
                    continue
                raise FailedPrecondition(
                    f"camera {claim.camera_id!r} is in active deployment "
                    f"{claim.deployment_id!r}; stop it first",
                    reason="CAMERA_IN_USE",
                ) from None
            self._audit_written()
            log.info(
                "deployment started", deployment_id=deployment_id, entries=snapshot.entry_count
            )
            return started
        raise Unavailable(f"deployment {deployment_id!r} kept changing; retry")

    async def stop(self, deployment_id: str, *, requested_by: str, reason: str) -> DeploymentRecord:
        for _ in range(_MAX_ATTEMPTS):
            record = await self.get(deployment_id)
            if record.state == ENDED:
                return record  # stopping twice is not an error
            now = self._clock()
            ended = dataclasses.replace(record, state=ENDED, ended_at=now)
            event = audit_event(
                audit.DEPLOYMENT_STOPPED,
                requested_by,
                now,
                deployment_id=deployment_id,
                previous_state="active" if record.state == ACTIVE else "created",
                reason=reason,
            )
            try:
                await self._store.transition_deployment(
                    ended, expected_state=record.state, events=[event]
                )
            except StaleState:
                continue
            self._audit_written()
            log.info("deployment stopped", deployment_id=deployment_id)
            return ended
        raise Unavailable(f"deployment {deployment_id!r} kept changing; retry")

    async def resolve(self, camera_id: str, at: datetime | None = None) -> DeploymentRecord | None:
        """The ACTIVE deployment holding ``camera_id`` whose window contains ``at`` (default
        now), or None. Two key lookups; no scan."""
        deployment_id = await self._store.deployment_for_camera(camera_id)
        if deployment_id is None:
            return None
        record = await self._store.get_deployment(deployment_id)
        if record is None:
            return None
        record = await self._end_if_overdue(record)
        when = self._clock() if at is None else at
        if record.state != ACTIVE or not record.in_window(when):
            return None
        return record

    async def end_overdue(self) -> list[str]:
        """End every deployment past its end time; their ids."""
        ended: list[str] = []
        for deployment_id in await self._store.overdue_deployment_ids(self._clock()):
            record = await self._store.get_deployment(deployment_id)
            if record is not None and record.overdue(self._clock()):
                await self._end_if_overdue(record)
                ended.append(deployment_id)
        return ended

    async def run_scheduler(self) -> None:
        """Background task: end deployments at their end time."""
        while True:
            raise_if_cancelling()
            try:
                await self.end_overdue()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: reads still end them lazily
                log.warning(
                    "ending overdue deployments failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                )
            await asyncio.sleep(self._settings.deployment_check_interval_s)

    async def _release_if_overdue(self, deployment_id: str) -> bool:
        """A camera held by a deployment whose window is over is free: end that one now."""
        other = await self._store.get_deployment(deployment_id)
        if other is None or not other.overdue(self._clock()):
            return False
        await self._end_if_overdue(other)
        return True

    async def _end_if_overdue(self, record: DeploymentRecord) -> DeploymentRecord:
        for _ in range(_MAX_ATTEMPTS):
            if not record.overdue(self._clock()):
                return record
            ended = dataclasses.replace(record, state=ENDED, ended_at=record.end_time)
            event = audit_event(
                audit.DEPLOYMENT_ENDED,
                SCHEDULER_ACTOR,
                record.end_time,
                deployment_id=record.deployment_id,
                previous_state="active" if record.state == ACTIVE else "created",
                reason="end_time reached",
            )
            try:
                await self._store.transition_deployment(
                    ended, expected_state=record.state, events=[event]
                )
            except StaleState:
                fresh = await self._store.get_deployment(record.deployment_id)
                if fresh is None:
                    return record
                record = fresh
                continue
            self._audit_written()
            log.info("deployment ended", deployment_id=record.deployment_id)
            return ended
        raise Unavailable(f"deployment {record.deployment_id!r} kept changing; retry")
