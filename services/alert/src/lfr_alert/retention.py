"""The retention job (DESIGN invariant 3): deletes alerts, crops included, once their retention
has passed, unless under legal hold; each deletion is audited in the same atomic step."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from lfr.common.audit import ALERT_DELETED
from lfr.common.logging import get_logger
from lfr.common.tasks import raise_if_cancelling
from lfr_alert.audit_log import new_record_id
from lfr_alert.store import AlertStore, AuditEntry

log = get_logger("lfr.alert.retention")

ACTOR = "lfr-alert/retention"


class RetentionJob:
    def __init__(
        self,
        store: AlertStore,
        *,
        interval_s: float,
        compact_interval_s: float | None = 300.0,
        batch: int = 200,
        clock: Callable[[], float] = time.time,
        ids: Callable[[], str] = new_record_id,
    ) -> None:
        self._store = store
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock
        self._ids = ids
        self.deleted = 0
        self._compact_interval_s = compact_interval_s
        self._compact_pending = False
        self._last_compact = -math.inf

    async def sweep(self) -> int:
        """Delete every alert due now; returns how many were deleted."""
        now_ms = int(self._clock() * 1000)
        deleted = 0
        while True:
            due = await self._store.expired(now_ms, self._batch)
            removed = 0
            for alert_id, expires_ms in due:
                expired_at = datetime.fromtimestamp(expires_ms / 1000, UTC)
                audit = AuditEntry(
                    record_id=self._ids(),
                    actor=ACTOR,
                    action=ALERT_DELETED,
                    details={
                        "alert_id": alert_id,
                        "reason": "retention",
                        "expired_at": expired_at.isoformat(timespec="milliseconds"),
                    },
                )
                if await self._store.delete_expired(alert_id, now_ms, audit):
                    removed += 1
            deleted += removed
            # Kept ones (held meanwhile) leave the index, so a full batch means there may be more.
            if len(due) < self._batch or not removed:
                break
        if deleted:
            log.info("retention deleted alerts", count=deleted)
            self._compact_pending = True
        self.deleted += deleted
        await self._maybe_compact()
        return deleted

    async def _maybe_compact(self) -> None:
        """Deleted crops must leave the disk too, not only memory: ask for an AOF rewrite after
        deletions, at most once per ``compact_interval_s`` (a rewrite copies the whole dataset)."""
        if self._compact_interval_s is None or not self._compact_pending:
            return
        now = time.monotonic()
        if now - self._last_compact < self._compact_interval_s:
            return
        if await self._store.compact():
            self._compact_pending = False
            self._last_compact = now
            log.info("asked the alert store to rewrite its append-only file")

    async def run(self) -> None:
        """Background task: sweep every ``interval_s`` until cancelled."""
        while True:
            raise_if_cancelling()
            try:
                await self.sweep()
            except Exception as exc:  # Redis away: try again next round
                raise_if_cancelling()
                log.warning("retention sweep failed", error_type=type(exc).__name__, error=str(exc))
            await asyncio.sleep(self._interval_s)
