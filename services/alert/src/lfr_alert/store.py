"""What the alert service needs from its database, as a Protocol.

``redis_store.RedisAlertStore`` is the real one (the only module importing ``redis``);
``memory_store.InMemoryAlertStore`` keeps the same semantics in process memory for tests.

Every change that must be audited takes its :class:`AuditEntry` and stores it in the same
atomic step as the change (one Lua script in Redis): an alert never exists without its
``alert.raised`` record, and a deletion never happens without its ``alert.deleted`` record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from lfr.common.errors import FailedPrecondition
from lfr.v1 import alert_pb2


@dataclass(frozen=True)
class AuditEntry:
    """A record to append; seq, time and hashes are assigned by the store."""

    record_id: str
    actor: str
    action: str
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NewAlert:
    alert_id: str
    event_id: str
    #: Identifies "the same subject on the same camera" for the cool-down.
    dedup_key: str
    cooldown_ms: int  # 0 = no de-duplication
    expires_ms: int
    #: The Alert as raised (``alerts.new_alert``), serialised.
    pb: bytes
    audit: AuditEntry


@dataclass(frozen=True)
class PublishOutcome:
    alert_id: str
    replayed: bool = False
    deduplicated: bool = False
    cursor: str = ""  # set when a new alert was written


@dataclass(frozen=True)
class Batch:
    """Alerts read from the stream, and the cursor of the last stream entry read (== the
    starting cursor when nothing was read). Entries whose alert was deleted meanwhile are
    skipped but still advance ``last``."""

    last: str
    alerts: list[alert_pb2.Alert]
    exhausted: bool = False  # no entries beyond ``last`` in the direction read


#: Audit records read from the log, each with its position (pass it back to read on after it).
AuditEntries = list[tuple[str, alert_pb2.AuditRecord]]


class AlreadyAdjudicated(FailedPrecondition):
    """A second adjudication; carries the alert with its first decision."""

    reason = "ALREADY_ADJUDICATED"

    def __init__(self, alert: alert_pb2.Alert) -> None:
        adj = alert.adjudication
        when = adj.decided_at.ToDatetime().isoformat(timespec="seconds") + "Z"
        decision = alert_pb2.Decision.Name(adj.decision).removeprefix("DECISION_")
        reason = f" ({adj.reason})" if adj.reason else ""
        super().__init__(
            f"alert {alert.alert_id} was already adjudicated: {decision} by officer "
            f"{adj.officer_id} at {when}{reason}"
        )
        self.alert = alert


class AlertStore(Protocol):
    async def ping(self) -> bool: ...

    async def close(self) -> None: ...

    # Alerts.
    async def publish(self, alert: NewAlert) -> PublishOutcome:
        """Atomically: a replay of ``event_id`` changes nothing; a repeat within the cool-down
        joins the first alert; otherwise the alert, its stream entry, its idempotency key and
        its audit record are written together. Durable when it returns."""
        ...

    async def get(self, alert_id: str) -> alert_pb2.Alert | None: ...

    async def adjudicate(
        self,
        alert_id: str,
        adjudication: alert_pb2.Adjudication,
        new_state: int,
        audit: AuditEntry,
    ) -> alert_pb2.Alert:
        """Record the decision once; raises NotFound or :class:`AlreadyAdjudicated`."""
        ...

    async def set_legal_hold(
        self, alert_id: str, hold: bool, audit: AuditEntry
    ) -> tuple[alert_pb2.Alert, bool]:
        """Set the flag (audited); returns the alert and whether it changed. Raises NotFound."""
        ...

    async def ack(self, subscriber_id: str, alert_id: str, now_ms: int) -> str | None:
        """Record that the subscriber has the alert; its last-acked cursor only moves forward.
        Returns the alert's cursor, or None when there is no such alert."""
        ...

    async def acked_cursor(self, subscriber_id: str) -> str:
        """The subscriber's last-acked cursor, "" when it has acked nothing."""
        ...

    # The alert stream.
    async def last_cursor(self) -> str:
        """Cursor of the newest alert in the stream (``alerts.ORIGIN`` when none)."""
        ...

    async def read_after(self, cursor: str, count: int, *, until: str = "") -> Batch:
        """Up to ``count`` alerts after ``cursor`` (exclusive) and up to ``until`` (inclusive,
        "" = no bound), oldest first."""
        ...

    async def wait_after(self, cursor: str, count: int, block_ms: int) -> Batch:
        """Like :meth:`read_after`, but waits up to ``block_ms`` for something to arrive."""
        ...

    async def read_before(self, cursor: str, count: int) -> Batch:
        """Up to ``count`` alerts before ``cursor`` (exclusive; "" = the newest), newest first."""
        ...

    # Retention.
    async def expired(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """``(alert_id, expires_ms)`` of alerts due for deletion (none under legal hold)."""
        ...

    async def delete_expired(self, alert_id: str, now_ms: int, audit: AuditEntry) -> bool:
        """Delete the alert (crop, stream entry, idempotency keys) with its audit record, unless
        it is under legal hold or not yet expired; True when it was deleted."""
        ...

    async def compact(self) -> bool:
        """Have the database rewrite its on-disk copy so deleted alerts leave the disk too (an
        append-only file keeps deleted crops until it is rewritten). False when that could not
        start now (e.g. a rewrite is already running); try again later."""
        ...

    # The audit log.
    async def append_audit(
        self, entry: AuditEntry, idempotency_key: str = ""
    ) -> alert_pb2.AuditRecord:
        """Append a record; with ``idempotency_key``, a repeat of a key seen before (for a week)
        appends nothing and returns the record appended first."""
        ...

    async def read_audit(
        self, position: str, count: int, *, since_ms: int = 0, until_ms: int = 0
    ) -> AuditEntries:
        """Up to ``count`` records in log order after ``position`` ("" = from the start),
        restricted to ``since_ms <= time <= until_ms`` (0 = unbounded); fewer than ``count``
        means the end was reached."""
        ...

    async def audit_head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the last record appended; None when the log is empty."""
        ...
