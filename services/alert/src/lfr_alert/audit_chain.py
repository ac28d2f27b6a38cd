"""The audit log's hash chain (pure: no I/O).

Each record's hash is ``sha256(prev_hash || canonical(record))`` in lowercase hex; the first
record's ``prev_hash`` is :data:`GENESIS`. The canonical form is a sequence of netstring-like
fields ``<byte length>:<utf-8 bytes>,`` — version tag, seq, record id, time (epoch ms), actor,
action, the number of details, then each detail key and value in key order. Length prefixes make
it unambiguous without any escaping, so the Lua script that appends records (``lua.py``) builds
the very same bytes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass

from lfr.common.errors import InvalidArgument
from lfr.v1 import alert_pb2
from lfr_alert.alerts import ms_timestamp, timestamp_ms

VERSION = "lfr.audit.v1"
GENESIS = "0" * 64

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_ACTOR_CHARS = 128
MAX_DETAILS = 64
MAX_DETAIL_KEY_CHARS = 64
MAX_DETAIL_VALUE_CHARS = 4096


def canonical(
    *, seq: int, record_id: str, time_ms: int, actor: str, action: str, details: Mapping[str, str]
) -> bytes:
    parts = [VERSION, str(seq), record_id, str(time_ms), actor, action, str(len(details))]
    for key in sorted(details):
        parts += [key, details[key]]
    out = bytearray()
    for part in parts:
        data = part.encode()
        out += b"%d:%s," % (len(data), data)
    return bytes(out)


def chain_hash(prev_hash: str, canonical_form: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_form).hexdigest()


def record_hash(record: alert_pb2.AuditRecord) -> str:
    """What ``record.hash`` must be, given its own ``prev_hash``."""
    form = canonical(
        seq=record.seq,
        record_id=record.record_id,
        time_ms=timestamp_ms(record.time),
        actor=record.actor,
        action=record.action,
        details=record.details,
    )
    return chain_hash(record.prev_hash, form)


def make_record(
    *,
    seq: int,
    record_id: str,
    time_ms: int,
    actor: str,
    action: str,
    details: Mapping[str, str],
    prev_hash: str,
) -> alert_pb2.AuditRecord:
    """A new record, hashed (used by the in-memory store; Redis computes it in Lua)."""
    record = alert_pb2.AuditRecord(
        seq=seq,
        record_id=record_id,
        time=ms_timestamp(time_ms),
        actor=actor,
        action=action,
        details=dict(details),
        prev_hash=prev_hash,
    )
    record.hash = record_hash(record)
    return record


def validate_append(actor: str, action: str, details: Mapping[str, str]) -> None:
    """Refuse records that cannot be read back unambiguously or are implausibly large; the
    log holds ids and counts, never face data."""
    if not actor or len(actor) > MAX_ACTOR_CHARS:
        raise InvalidArgument(f"actor must be 1-{MAX_ACTOR_CHARS} characters")
    if not ACTION_PATTERN.match(action):
        raise InvalidArgument(
            f"action {action[:80]!r} must be dotted lower-case words, e.g. 'deployment.started'"
        )
    if len(details) > MAX_DETAILS:
        raise InvalidArgument(f"at most {MAX_DETAILS} details per audit record")
    for key, value in details.items():
        if not key or len(key) > MAX_DETAIL_KEY_CHARS:
            raise InvalidArgument(f"detail keys must be 1-{MAX_DETAIL_KEY_CHARS} characters")
        if len(value) > MAX_DETAIL_VALUE_CHARS:
            raise InvalidArgument(
                f"detail {key!r} is longer than {MAX_DETAIL_VALUE_CHARS} characters; the audit "
                "log holds ids and counts"
            )


@dataclass
class Verification:
    ok: bool = True
    records_checked: int = 0
    first_broken_seq: int = 0
    first_broken_record_id: str = ""
    problem: str = ""
    last_hash: str = GENESIS
    last_seq: int = 0

    def fail(self, seq: int, record_id: str, problem: str) -> None:
        self.ok = False
        self.first_broken_seq = seq
        self.first_broken_record_id = record_id
        self.problem = problem

    def to_proto(self) -> alert_pb2.VerifyAuditLogResponse:
        return alert_pb2.VerifyAuditLogResponse(
            ok=self.ok,
            records_checked=self.records_checked,
            first_broken_seq=self.first_broken_seq,
            first_broken_record_id=self.first_broken_record_id,
            problem=self.problem,
        )


async def verify(
    records: AsyncIterable[alert_pb2.AuditRecord], head: tuple[int, str] | None
) -> Verification:
    """Recompute the chain over ``records`` (in log order) and compare the end with ``head``
    (``(seq, hash)`` the store says it last appended; None when it has appended nothing).
    Stops at the first broken record."""
    result = Verification()
    async for record in records:
        expected_seq = result.last_seq + 1
        if record.seq != expected_seq:
            if record.seq > expected_seq:
                problem = (
                    f"seq {record.seq} follows seq {result.last_seq}: records "
                    f"{expected_seq}..{record.seq - 1} are missing"
                )
            else:
                problem = f"seq {record.seq} is out of order (expected {expected_seq})"
            result.fail(record.seq, record.record_id, problem)
            return result
        if record.prev_hash != result.last_hash:
            result.fail(
                record.seq,
                record.record_id,
                f"prev_hash {record.prev_hash[:16]}... does not match the hash of the record "
                f"before it ({result.last_hash[:16]}...)",
            )
            return result
        recomputed = record_hash(record)
        if recomputed != record.hash:
            result.fail(
                record.seq,
                record.record_id,
                f"content does not match its hash: stored {record.hash[:16]}..., recomputed "
                f"{recomputed[:16]}... (the record was altered)",
            )
            return result
        result.records_checked += 1
        result.last_seq = record.seq
        result.last_hash = record.hash
    head_seq, head_hash = head if head is not None else (0, GENESIS)
    if head_seq != result.last_seq or head_hash != result.last_hash:
        result.fail(
            result.last_seq + 1,
            "",
            f"the log ends at seq {result.last_seq} but the chain head says seq {head_seq}: "
            "records at the end were removed or the head was altered",
        )
    return result
