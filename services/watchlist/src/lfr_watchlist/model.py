"""The watchlist service's records, independent of protobuf and of Redis.

Enumerations reuse the protobuf enum numbers (``lfr.v1`` ``Category``, ``IndexAlgorithm``,
``DeploymentState``) so there is one list of each. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lfr.common.errors import InvalidArgument
from lfr.v1 import watchlist_pb2

#: Returns "now"; injected so tests can move time without sleeping.
Clock = Callable[[], datetime]

CREATED = watchlist_pb2.DEPLOYMENT_STATE_CREATED
ACTIVE = watchlist_pb2.DEPLOYMENT_STATE_ACTIVE
ENDED = watchlist_pb2.DEPLOYMENT_STATE_ENDED

FLAT = "FLAT"
HNSW = "HNSW"

# Ids become parts of Redis keys and index names: no ':' (the key separator), no spaces.
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ID_RULE = "1-64 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit"


def check_id(value: str, field_name: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise InvalidArgument(f"{field_name} {value!r} is not a valid id ({ID_RULE})")
    return value


def new_id(prefix: str) -> str:
    """``<prefix>-<ms since epoch, hex><random>``: unique, and sorts by creation time."""
    return f"{prefix}-{time.time_ns() // 1_000_000:011x}{secrets.token_hex(5)}"


@dataclass(frozen=True, slots=True)
class Governance:
    """Why an entry may exist (DESIGN invariant 5)."""

    category: int  #: lfr.v1.Category number, never UNSPECIFIED
    legal_basis_ref: str
    image_source: str
    approver: str
    expires_at: datetime
    image_date: datetime | None = None
    subject_ref: str = ""


@dataclass(frozen=True, slots=True)
class WatchlistRecord:
    watchlist_id: str
    name: str
    description: str
    algorithm: str  #: FLAT or HNSW
    keep_enrolment_images: bool
    created_at: datetime
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class EntryRecord:
    entry_id: str
    watchlist_id: str
    governance: Governance
    image_count: int  #: one embedding per image
    enrolled_at: datetime
    model_version: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the watch list held when a deployment started."""

    entry_count: int
    content_hash: str
    taken_at: datetime
    entry_ids: tuple[str, ...] = ()


def snapshot_of(entries: Iterable[tuple[str, str]], taken_at: datetime) -> Snapshot:
    """sha256 over the sorted ``entry_id<TAB>model_version`` lines (the contract's definition)."""
    ordered = sorted(entries)
    digest = hashlib.sha256()
    for entry_id, model_version in ordered:
        digest.update(f"{entry_id}\t{model_version}\n".encode())
    return Snapshot(
        entry_count=len(ordered),
        content_hash=digest.hexdigest(),
        taken_at=taken_at,
        entry_ids=tuple(entry_id for entry_id, _ in ordered),
    )


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    deployment_id: str
    authorising_officer: str
    purpose: str
    location: str
    camera_ids: tuple[str, ...]
    watchlist_id: str
    threshold: float
    start_time: datetime
    end_time: datetime
    state: int  #: lfr.v1.DeploymentState number
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    snapshot: Snapshot | None = None

    def in_window(self, at: datetime) -> bool:
        return self.start_time <= at < self.end_time

    def overdue(self, now: datetime) -> bool:
        """Not ended yet although its window is over."""
        return self.state != ENDED and now >= self.end_time


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit record to append (ids and counts only, never face data)."""

    action: str
    actor: str
    details: dict[str, str] = field(default_factory=dict)


def audit_event(action: str, actor: str, at: datetime, **details: str) -> AuditEvent:
    """An event stamped with when it happened (delivery to the log may come later)."""
    return AuditEvent(action=action, actor=actor, details={**details, "at": at.isoformat()})
