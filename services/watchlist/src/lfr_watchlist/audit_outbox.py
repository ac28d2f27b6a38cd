"""Delivers the audit events the store wrote with each change to the audit log (an outbox).

Writing the event in the same Redis transaction as the change, and forwarding it afterwards,
means no change goes unaudited when the alert service is down or the process dies in between,
and the watchlist service keeps working (and purging) meanwhile. Delivery is at least once and
in order; each record carries ``event_id`` (``watchlist:<outbox id>``) so a duplicate after a
crash can be recognised.
"""

from __future__ import annotations

import asyncio
import contextlib

from lfr.common.audit import AuditSink
from lfr.common.logging import get_logger
from lfr.common.tasks import raise_if_cancelling
from lfr_watchlist.store import Store

log = get_logger("lfr.watchlist.audit")

EVENT_SOURCE = "watchlist"


class AuditForwarder:
    def __init__(
        self, store: Store, sink: AuditSink, *, retry_interval_s: float = 1.0, batch: int = 100
    ) -> None:
        self._store = store
        self._sink = sink
        self._retry_interval_s = retry_interval_s
        self._batch = batch
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    def notify(self) -> None:
        """New events were written: forward them soon."""
        self._wake.set()

    async def flush(self) -> int:
        """Forward every pending event, oldest first; returns how many. Raises (an
        ``LfrError``) at the first one the sink refuses, which stays pending."""
        sent = 0
        async with self._lock:
            while True:
                pending = await self._store.pending_audit(self._batch)
                if not pending:
                    return sent
                for outbox_id, event in pending:
                    details = {**event.details, "event_id": f"{EVENT_SOURCE}:{outbox_id}"}
                    await self._sink.record(event.action, event.actor, details)
                    # Acknowledged one by one: a failure later in the batch re-sends nothing.
                    await self._store.ack_audit([outbox_id])
                    sent += 1

    async def run(self) -> None:
        """Background task: forward as events arrive, retrying while the sink is down."""
        while True:
            raise_if_cancelling()
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep trying; the events are safe in Redis
                log.warning(
                    "audit forwarding failed", error=str(exc), error_type=type(exc).__name__
                )
                await asyncio.sleep(self._retry_interval_s)
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._retry_interval_s):
                    await self._wake.wait()
