"""Live alerts to subscribers: one reader of the alert stream fans out to per-subscriber queues.

The hub is the only task blocked on the stream (XREAD BLOCK); each alert is matched against each
subscriber's filter and appended to that subscriber's bounded queue without ever waiting, so a
slow subscriber cannot slow the hub or anyone else. A queue that would overflow marks its
subscriber as cut off; its stream then ends with RESOURCE_EXHAUSTED and the client resumes from
its cursor (the alerts are all in the stream).

Hand-over from history to live: :meth:`AlertHub.register` returns the hub's position P in the
same step (no ``await``) as it adds the subscriber, and the hub moves P only in the same step
as it hands the alerts up to P to the subscribers. So alerts after P reach the queue, alerts up to
P are in the history the subscriber reads itself, and none is missed or delivered twice.
"""

from __future__ import annotations

import asyncio
from collections import deque

from lfr.common.errors import LfrError, ResourceExhausted, Unavailable
from lfr.common.logging import get_logger
from lfr.common.tasks import raise_if_cancelling
from lfr.v1 import alert_pb2
from lfr_alert.alerts import matches
from lfr_alert.store import AlertStore, Batch

log = get_logger("lfr.alert.fanout")


class Overflowed(Exception):
    """The subscriber's queue overflowed; the servicer turns it into RESOURCE_EXHAUSTED."""


class Subscription:
    """One subscriber's filter and bounded queue."""

    def __init__(self, subscriber_id: str, filter: alert_pb2.AlertFilter, capacity: int) -> None:
        self.subscriber_id = subscriber_id
        self.filter = filter
        self.capacity = capacity
        self._queue: deque[alert_pb2.Alert] = deque()
        self._wake = asyncio.Event()
        self._overflowed = False
        self._closed: LfrError | None = None

    @property
    def active(self) -> bool:
        return not self._overflowed and self._closed is None

    def offer(self, alert: alert_pb2.Alert) -> bool:
        """Queue ``alert`` if it passes the filter; False once the subscriber is cut off."""
        if not self.active:
            return False
        if not matches(alert, self.filter):
            return True
        if len(self._queue) >= self.capacity:
            self._overflowed = True
            self._queue.clear()  # it resumes from its cursor; the stream has them all
            self._wake.set()
            return False
        self._queue.append(alert)
        self._wake.set()
        return True

    def close(self, error: LfrError) -> None:
        self._closed = error
        self._wake.set()

    async def next(self) -> alert_pb2.Alert:
        """The next queued alert; raises :class:`Overflowed` or the error it was closed with."""
        while True:
            if self._overflowed:
                raise Overflowed
            if self._closed is not None:
                raise self._closed
            if self._queue:
                return self._queue.popleft()
            self._wake.clear()
            await self._wake.wait()


class AlertHub:
    def __init__(
        self,
        store: AlertStore,
        *,
        max_subscribers: int,
        batch: int = 256,
        block_ms: int = 1000,
        retry_max_s: float = 2.0,
    ) -> None:
        self._store = store
        self._max_subscribers = max_subscribers
        self._batch = batch
        self._block_ms = block_ms
        self._retry_max_s = retry_max_s
        self._subs: set[Subscription] = set()
        self._ready = asyncio.Event()
        self.position = ""
        self.dispatched = 0
        self.cut_off = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    async def wait_ready(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            raise Unavailable(
                "the alert stream is not readable yet (Redis unreachable); retry"
            ) from None

    def check_capacity(self) -> None:
        if len(self._subs) >= self._max_subscribers:
            raise ResourceExhausted(
                f"the alert service serves at most {self._max_subscribers} subscribers",
                reason="TOO_MANY_SUBSCRIBERS",
            )

    def register(self, sub: Subscription) -> str:
        """Add ``sub``; returns the cursor after which the hub delivers to it."""
        if not self._ready.is_set():
            raise Unavailable("the alert stream is not readable yet; retry")
        self.check_capacity()
        self._subs.add(sub)
        return self.position

    def unregister(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def dispatch(self, batch: Batch) -> None:
        """Hand ``batch`` to the subscribers and move the position past it, in one step."""
        for alert in batch.alerts:
            for sub in list(self._subs):
                if not sub.offer(alert):
                    self._subs.discard(sub)
                    self.cut_off += 1
                    log.warning(
                        "subscriber cut off",
                        subscriber_id=sub.subscriber_id,
                        queue_capacity=sub.capacity,
                    )
            self.dispatched += 1
        self.position = batch.last

    async def run(self) -> None:
        """Background task: follow the stream until cancelled."""
        delay = 0.05
        outage = False
        try:
            while True:
                raise_if_cancelling()
                try:
                    if not self._ready.is_set():
                        self.position = await self._store.last_cursor()
                        self._ready.set()
                    batch = await self._store.wait_after(self.position, self._batch, self._block_ms)
                except Exception as exc:  # keep following the stream whatever happened
                    raise_if_cancelling()
                    if not outage:
                        log.warning(
                            "alert stream unreadable; retrying",
                            error_type=type(exc).__name__,
                            error=str(exc),
                        )
                        outage = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                if outage:
                    log.info("alert stream readable again", position=self.position)
                    outage, delay = False, 0.05
                self.dispatch(batch)
        finally:
            self._ready.clear()
            for sub in list(self._subs):
                sub.close(
                    Unavailable("the alert service is shutting down; resume from your cursor")
                )
            self._subs.clear()
