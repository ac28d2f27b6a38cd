"""An :class:`~lfr_alert.store.AlertStore` in process memory, with the Redis store's semantics.

For tests and local experiments only: nothing survives the process. Cursors have the same
``<ms>-<seq>`` shape as Redis stream ids, so clients cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lfr.common.errors import NotFound, Unavailable
from lfr.v1 import alert_pb2
from lfr_alert import alerts as a
from lfr_alert.alerts import ORIGIN, assemble, parse_cursor, timestamp_ms
from lfr_alert.audit_chain import GENESIS, make_record
from lfr_alert.store import (
    AlreadyAdjudicated,
    AuditEntries,
    AuditEntry,
    Batch,
    NewAlert,
    PublishOutcome,
)


@dataclass
class _Cool:
    alert_id: str
    until: float


@dataclass
class _Stored:
    fields: dict[str, str | bytes]
    events: set[str] = field(default_factory=set)


class InMemoryAlertStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._alerts: dict[str, _Stored] = {}
        self._events: dict[str, tuple[str, bool]] = {}  # event_id -> (alert_id, deduplicated)
        self._cool: dict[str, _Cool] = {}
        self._stream: list[tuple[tuple[int, int], str]] = []  # (cursor, alert_id), in order
        self._last_id = (0, 0)
        self._expiry: dict[str, int] = {}
        self._acks: dict[str, str] = {}
        self._audit: list[alert_pb2.AuditRecord] = []
        self._audit_keys: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self.available = True  # tests flip this to simulate an outage

    def _check(self) -> None:
        if not self.available:
            raise Unavailable("alert store unavailable (simulated)")

    async def ping(self) -> bool:
        self._check()
        return True

    async def close(self) -> None:
        return None

    def _next_id(self) -> tuple[int, int]:
        ms = int(self._clock() * 1000)
        last_ms, last_seq = self._last_id
        self._last_id = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return self._last_id

    def _append(self, entry: AuditEntry) -> alert_pb2.AuditRecord:
        prev = self._audit[-1] if self._audit else None
        last_ms = timestamp_ms(prev.time) if prev else 0
        record = make_record(
            seq=len(self._audit) + 1,
            record_id=entry.record_id,
            time_ms=max(int(self._clock() * 1000), last_ms),
            actor=entry.actor,
            action=entry.action,
            details=entry.details,
            prev_hash=prev.hash if prev else GENESIS,
        )
        self._audit.append(record)
        return record

    # --- alerts ---------------------------------------------------------------------------

    async def publish(self, alert: NewAlert) -> PublishOutcome:
        self._check()
        if alert.event_id in self._events:
            alert_id, dedup = self._events[alert.event_id]
            return PublishOutcome(alert_id, replayed=True, deduplicated=dedup)
        now = self._clock()
        cool = self._cool.get(alert.dedup_key)
        if (
            alert.cooldown_ms > 0
            and cool is not None
            and cool.until > now
            and cool.alert_id in self._alerts
        ):
            first = self._alerts[cool.alert_id]
            first.fields[a.F_REPEATS] = str(int(first.fields[a.F_REPEATS]) + 1)
            first.events.add(alert.event_id)
            self._events[alert.event_id] = (cool.alert_id, True)
            return PublishOutcome(cool.alert_id, deduplicated=True)
        ms, seq = self._next_id()
        cursor = f"{ms}-{seq}"
        self._alerts[alert.alert_id] = _Stored(
            {
                a.F_PB: alert.pb,
                a.F_CURSOR: cursor,
                a.F_STATE: str(a.PENDING),
                a.F_HOLD: "0",
                a.F_REPEATS: "0",
                a.F_EXPIRES_MS: str(alert.expires_ms),
            },
            {alert.event_id},
        )
        self._stream.append(((ms, seq), alert.alert_id))
        self._expiry[alert.alert_id] = alert.expires_ms
        self._events[alert.event_id] = (alert.alert_id, False)
        if alert.cooldown_ms > 0:
            self._cool[alert.dedup_key] = _Cool(alert.alert_id, now + alert.cooldown_ms / 1000)
        self._append(alert.audit)
        async with self._changed:
            self._changed.notify_all()
        return PublishOutcome(alert.alert_id, cursor=cursor)

    async def get(self, alert_id: str) -> alert_pb2.Alert | None:
        self._check()
        stored = self._alerts.get(alert_id)
        return assemble(stored.fields) if stored else None

    def _stored(self, alert_id: str) -> _Stored:
        stored = self._alerts.get(alert_id)
        if stored is None:
            raise NotFound(f"alert {alert_id} not found (never raised, or deleted by retention)")
        return stored

    async def adjudicate(
        self,
        alert_id: str,
        adjudication: alert_pb2.Adjudication,
        new_state: int,
        audit: AuditEntry,
    ) -> alert_pb2.Alert:
        self._check()
        stored = self._stored(alert_id)
        if stored.fields[a.F_STATE] != str(a.PENDING):
            raise AlreadyAdjudicated(assemble(stored.fields))
        stored.fields.update(
            {
                a.F_STATE: str(new_state),
                a.F_OFFICER: adjudication.officer_id,
                a.F_DECISION: str(int(adjudication.decision)),
                a.F_REASON: adjudication.reason,
                a.F_DECIDED_MS: str(timestamp_ms(adjudication.decided_at)),
            }
        )
        self._append(audit)
        return assemble(stored.fields)

    async def set_legal_hold(
        self, alert_id: str, hold: bool, audit: AuditEntry
    ) -> tuple[alert_pb2.Alert, bool]:
        self._check()
        stored = self._stored(alert_id)
        flag = "1" if hold else "0"
        if stored.fields[a.F_HOLD] == flag:
            return assemble(stored.fields), False
        stored.fields[a.F_HOLD] = flag
        if hold:
            self._expiry.pop(alert_id, None)
        else:
            self._expiry[alert_id] = int(stored.fields[a.F_EXPIRES_MS])
        self._append(audit)
        return assemble(stored.fields), True

    async def ack(self, subscriber_id: str, alert_id: str, now_ms: int) -> str | None:
        self._check()
        stored = self._alerts.get(alert_id)
        if stored is None:
            return None
        cursor = str(stored.fields[a.F_CURSOR])
        prev = self._acks.get(subscriber_id)
        if prev is None or parse_cursor(cursor) > parse_cursor(prev):
            self._acks[subscriber_id] = cursor
        return cursor

    async def acked_cursor(self, subscriber_id: str) -> str:
        self._check()
        return self._acks.get(subscriber_id, "")

    # --- the alert stream -----------------------------------------------------------------

    async def last_cursor(self) -> str:
        self._check()
        if not self._stream:
            return ORIGIN
        ms, seq = self._stream[-1][0]
        return f"{ms}-{seq}"

    def _batch(self, entries: list[tuple[tuple[int, int], str]], start: str, count: int) -> Batch:
        last = f"{entries[-1][0][0]}-{entries[-1][0][1]}" if entries else start
        loaded = [assemble(self._alerts[i].fields) for _c, i in entries if i in self._alerts]
        return Batch(last, loaded, exhausted=len(entries) < count)

    async def read_after(self, cursor: str, count: int, *, until: str = "") -> Batch:
        self._check()
        lo = bisect.bisect_right(self._stream, (parse_cursor(cursor), "\uffff"))
        hi = (
            bisect.bisect_right(self._stream, (parse_cursor(until), "\uffff"))
            if until
            else len(self._stream)
        )
        return self._batch(self._stream[lo : min(hi, lo + count)], cursor, count)

    async def wait_after(self, cursor: str, count: int, block_ms: int) -> Batch:
        batch = await self.read_after(cursor, count)
        if batch.alerts or batch.last != cursor:
            return batch
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), block_ms / 1000)
        return await self.read_after(cursor, count)

    async def read_before(self, cursor: str, count: int) -> Batch:
        self._check()
        hi = (
            bisect.bisect_left(self._stream, (parse_cursor(cursor), ""))
            if cursor
            else len(self._stream)
        )
        entries = list(reversed(self._stream[max(0, hi - count) : hi]))
        return self._batch(entries, cursor, count)

    # --- retention ------------------------------------------------------------------------

    async def expired(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        self._check()
        due = sorted((ms, i) for i, ms in self._expiry.items() if ms <= now_ms)
        return [(i, ms) for ms, i in due[:limit]]

    async def delete_expired(self, alert_id: str, now_ms: int, audit: AuditEntry) -> bool:
        self._check()
        stored = self._alerts.get(alert_id)
        if stored is None or stored.fields[a.F_HOLD] == "1":
            self._expiry.pop(alert_id, None)
            return False
        if int(stored.fields[a.F_EXPIRES_MS]) > now_ms:
            return False
        for event_id in stored.events:
            self._events.pop(event_id, None)
        del self._alerts[alert_id]
        self._expiry.pop(alert_id, None)
        self._stream = [(c, i) for c, i in self._stream if i != alert_id]
        self._append(audit)
        return True

    async def compact(self) -> bool:
        self._check()
        return True

    # --- the audit log --------------------------------------------------------------------

    async def append_audit(
        self, entry: AuditEntry, idempotency_key: str = ""
    ) -> alert_pb2.AuditRecord:
        self._check()
        record = alert_pb2.AuditRecord()
        if idempotency_key in self._audit_keys:
            record.CopyFrom(self._audit[self._audit_keys[idempotency_key] - 1])
            return record
        record.CopyFrom(self._append(entry))
        if idempotency_key:
            self._audit_keys[idempotency_key] = record.seq
        return record

    async def read_audit(
        self, position: str, count: int, *, since_ms: int = 0, until_ms: int = 0
    ) -> AuditEntries:
        self._check()
        page: AuditEntries = []
        # A position is the seq of the record read last.
        for record in self._audit[int(position) if position else 0 :]:
            ms = timestamp_ms(record.time)
            if (until_ms and ms > until_ms) or len(page) == count:
                break
            if ms >= since_ms:
                copy = alert_pb2.AuditRecord()
                copy.CopyFrom(record)
                page.append((str(record.seq), copy))
        return page

    async def audit_head(self) -> tuple[int, str] | None:
        self._check()
        return (len(self._audit), self._audit[-1].hash) if self._audit else None

    # For tests: the stored records themselves (tampering with them is detectable).
    @property
    def audit_records(self) -> list[alert_pb2.AuditRecord]:
        return self._audit
