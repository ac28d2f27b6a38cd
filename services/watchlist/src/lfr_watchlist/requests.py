"""Request validation: protobuf requests in, records out, or ``InvalidArgument`` naming the field.

Reasons: ``MISSING_FIELD`` (a required field is empty), ``INVALID_FIELD`` (present but not
acceptable), ``THRESHOLD_BELOW_FLOOR``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

from lfr.common.errors import InvalidArgument
from lfr.common.timeutil import is_set, to_datetime
from lfr.v1 import common_pb2, watchlist_pb2
from lfr_watchlist.model import FLAT, HNSW, Governance, check_id

MISSING_FIELD = "MISSING_FIELD"
INVALID_FIELD = "INVALID_FIELD"
THRESHOLD_BELOW_FLOOR = "THRESHOLD_BELOW_FLOOR"
#: Longest accepted free-text field (names, references, purposes).
MAX_TEXT = 512
MAX_CAMERA_ID = 128
#: Clock skew tolerated on dates that must not lie in the future.
CLOCK_SKEW = timedelta(minutes=5)

_CATEGORIES = ", ".join(
    name
    for name in common_pb2.Category.keys()  # noqa: SIM118 (an enum wrapper, not a dict) if name != "CATEGORY_UNSPECIFIED"
)


def required_text(value: str, field_name: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument(f"{field_name} is required", reason=MISSING_FIELD)
    return optional_text(value, field_name)


def optional_text(value: str, field_name: str) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise InvalidArgument(
            f"{field_name} is longer than {MAX_TEXT} characters", reason=INVALID_FIELD
        )
    if any(ord(c) < 32 for c in value):
        raise InvalidArgument(f"{field_name} holds control characters", reason=INVALID_FIELD)
    return value


def required_id(value: str, field_name: str) -> str:
    if not value:
        raise InvalidArgument(f"{field_name} is required", reason=MISSING_FIELD)
    return check_id(value, field_name)


def optional_id(value: str, field_name: str) -> str:
    return check_id(value, field_name) if value else ""


def required_time(ts: Timestamp, present: bool, field_name: str) -> datetime:
    if not present or not is_set(ts):
        raise InvalidArgument(f"{field_name} is required", reason=MISSING_FIELD)
    return to_datetime(ts)


def algorithm_of(value: int) -> str:
    if value in (watchlist_pb2.INDEX_ALGORITHM_UNSPECIFIED, watchlist_pb2.INDEX_ALGORITHM_FLAT):
        return FLAT
    if value == watchlist_pb2.INDEX_ALGORITHM_HNSW:
        return HNSW
    raise InvalidArgument(f"algorithm {value} is not a known IndexAlgorithm", reason=INVALID_FIELD)


def parse_governance(
    request: watchlist_pb2.EnrolRequest, *, now: datetime, max_ttl: timedelta
) -> Governance:
    """DESIGN invariant 5: every entry is governed; nothing is guessed or defaulted."""
    if not request.HasField("governance"):
        raise InvalidArgument("governance is required", reason=MISSING_FIELD)
    g = request.governance
    if g.category == common_pb2.CATEGORY_UNSPECIFIED:
        raise InvalidArgument(
            f"governance.category is required (one of {_CATEGORIES})", reason=MISSING_FIELD
        )
    if g.category not in common_pb2.Category.values():
        raise InvalidArgument(
            f"governance.category {g.category} is not one of {_CATEGORIES}", reason=INVALID_FIELD
        )
    legal_basis_ref = required_text(g.legal_basis_ref, "governance.legal_basis_ref")
    image_source = required_text(g.image_source, "governance.image_source")
    approver = required_text(g.approver, "governance.approver")
    expires_at = required_time(g.expires_at, g.HasField("expires_at"), "governance.expires_at")
    if expires_at <= now:
        raise InvalidArgument(
            f"governance.expires_at {expires_at.isoformat()} is not in the future",
            reason=INVALID_FIELD,
        )
    if expires_at > now + max_ttl:
        raise InvalidArgument(
            f"governance.expires_at {expires_at.isoformat()} is more than "
            f"{max_ttl.total_seconds() / 86400:g} days away (the configured maximum)",
            reason=INVALID_FIELD,
        )
    image_date = None
    if g.HasField("image_date") and is_set(g.image_date):
        image_date = to_datetime(g.image_date)
        if image_date > now + CLOCK_SKEW:
            raise InvalidArgument(
                f"governance.image_date {image_date.isoformat()} is in the future",
                reason=INVALID_FIELD,
            )
    return Governance(
        category=g.category,
        legal_basis_ref=legal_basis_ref,
        image_source=image_source,
        approver=approver,
        expires_at=expires_at,
        image_date=image_date,
        subject_ref=optional_text(g.subject_ref, "governance.subject_ref"),
    )


@dataclass(frozen=True, slots=True)
class DeploymentRequest:
    """A validated CreateDeploymentRequest (the watch list's existence is checked later)."""

    deployment_id: str  #: "" = generate
    authorising_officer: str
    purpose: str
    location: str
    camera_ids: tuple[str, ...]
    watchlist_id: str
    threshold: float
    threshold_defaulted: bool
    start_time: datetime
    end_time: datetime


def parse_threshold(value: float, *, default: float, floor: float) -> tuple[float, bool]:
    """``(threshold, defaulted)``. The request carries a float32: round away its noise so 0.7
    means 0.7 (and is not refused as 0.69999999 below a 0.7 floor)."""
    if not math.isfinite(value):
        raise InvalidArgument("threshold must be a finite number", reason=INVALID_FIELD)
    if value == 0:
        return default, True
    threshold = round(float(value), 6)
    if threshold > 1:
        raise InvalidArgument(
            f"threshold {threshold:g} is above 1, the highest score", reason=INVALID_FIELD
        )
    if threshold < floor:
        raise InvalidArgument(
            f"threshold {threshold:g} is below the configured floor {floor:g}",
            reason=THRESHOLD_BELOW_FLOOR,
        )
    return threshold, False


def parse_camera_ids(values: list[str]) -> tuple[str, ...]:
    if not values:
        raise InvalidArgument("camera_ids needs at least one camera", reason=MISSING_FIELD)
    seen: list[str] = []
    for i, raw in enumerate(values):
        camera = raw.strip()
        if not camera:
            raise InvalidArgument(f"camera_ids[{i}] is empty", reason=INVALID_FIELD)
        if len(camera) > MAX_CAMERA_ID or any(ord(c) < 32 for c in camera):
            raise InvalidArgument(
                f"camera_ids[{i}] must be 1-{MAX_CAMERA_ID} printable characters",
                reason=INVALID_FIELD,
            )
        if camera in seen:
            raise InvalidArgument(f"camera_ids[{i}] {camera!r} is repeated", reason=INVALID_FIELD)
        seen.append(camera)
    return tuple(seen)


def parse_create_deployment(
    request: watchlist_pb2.CreateDeploymentRequest,
    *,
    now: datetime,
    default_threshold: float,
    threshold_floor: float,
    max_duration: timedelta,
) -> DeploymentRequest:
    """DESIGN invariant 4: authorised (who, why, where) and time-bounded."""
    officer = required_text(request.authorising_officer, "authorising_officer")
    purpose = required_text(request.purpose, "purpose")
    location = required_text(request.location, "location")
    cameras = parse_camera_ids(list(request.camera_ids))
    watchlist_id = required_id(request.watchlist_id, "watchlist_id")
    threshold, defaulted = parse_threshold(
        request.threshold, default=default_threshold, floor=threshold_floor
    )
    start = required_time(request.start_time, request.HasField("start_time"), "start_time")
    end = required_time(request.end_time, request.HasField("end_time"), "end_time")
    if end <= start:
        raise InvalidArgument(
            f"end_time {end.isoformat()} is not after start_time {start.isoformat()}",
            reason=INVALID_FIELD,
        )
    if end <= now:
        raise InvalidArgument(f"end_time {end.isoformat()} is in the past", reason=INVALID_FIELD)
    if end - start > max_duration:
        raise InvalidArgument(
            f"the window end_time - start_time is longer than the configured maximum of "
            f"{max_duration.total_seconds() / 3600:g} hours",
            reason=INVALID_FIELD,
        )
    return DeploymentRequest(
        deployment_id=optional_id(request.deployment_id, "deployment_id"),
        authorising_officer=officer,
        purpose=purpose,
        location=location,
        camera_ids=cameras,
        watchlist_id=watchlist_id,
        threshold=threshold,
        threshold_defaulted=defaulted,
        start_time=start,
        end_time=end,
    )
