"""Alerts as stored, cursors, and subscriber filters (pure: no I/O).

An alert is stored as one record of fields: ``pb`` holds the Alert as raised (event, crop,
routing, times) and never changes; the fields that do change (state, adjudication, legal hold,
repeat count) sit beside it so they can be updated atomically without rewriting the evidence.
Both stores (Redis and in-memory) keep this layout and assemble alerts with :func:`assemble`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from google.protobuf.timestamp_pb2 import Timestamp

from lfr.common.errors import InvalidArgument
from lfr.common.timeutil import to_timestamp
from lfr.v1 import alert_pb2, common_pb2

# Fields of a stored alert. The Lua scripts in ``lua.py`` use the same names.
F_PB = "pb"
F_CURSOR = "cursor"
F_STATE = "state"
F_HOLD = "hold"
F_REPEATS = "repeats"
F_EXPIRES_MS = "expires_ms"
F_OFFICER = "officer"
F_DECISION = "decision"
F_REASON = "reason"
F_DECIDED_MS = "decided_ms"

PENDING = alert_pb2.ALERT_STATE_PENDING
STATE_BY_DECISION = {
    alert_pb2.DECISION_CONFIRM: alert_pb2.ALERT_STATE_CONFIRMED,
    alert_pb2.DECISION_REJECT: alert_pb2.ALERT_STATE_REJECTED,
}

# --- cursors --------------------------------------------------------------------------------

#: A Redis stream id ``<ms>-<seq>``; also accepted: ``<ms>`` (seq 0).
_CURSOR = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_U64 = 2**64
ORIGIN = "0-0"


def parse_cursor(cursor: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; raises InvalidArgument."""
    m = _CURSOR.match(cursor)
    if m is None or int(m.group(1)) >= _U64 or int(m.group(2) or 0) >= _U64:
        raise InvalidArgument(
            f"cursor {cursor[:64]!r} is not an alert cursor (<ms>-<seq>, as in Alert.cursor)",
            reason="BAD_CURSOR",
        )
    return int(m.group(1)), int(m.group(2) or 0)


def normalise_cursor(cursor: str) -> str:
    ms, seq = parse_cursor(cursor)
    return f"{ms}-{seq}"


def cursor_after(a: str, b: str) -> bool:
    """True when cursor ``a`` comes strictly after ``b``."""
    return parse_cursor(a) > parse_cursor(b)


# --- times --------------------------------------------------------------------------------
# Stored times are integer epoch milliseconds; converting through float seconds would round
# (and break the audit hash, which covers the millisecond value).


def ms_timestamp(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def timestamp_ms(ts: Timestamp) -> int:
    return int(ts.ToMilliseconds())


# --- stored alerts --------------------------------------------------------------------------


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def assemble(fields: Mapping[str, str | bytes]) -> alert_pb2.Alert:
    """The Alert as it stands: the stored evidence with its current state on top."""
    raw = fields[F_PB]
    alert = alert_pb2.Alert.FromString(raw if isinstance(raw, bytes) else raw.encode())
    alert.cursor = _text(fields.get(F_CURSOR))
    alert.state = int(_text(fields.get(F_STATE)) or PENDING)  # type: ignore[assignment]
    alert.legal_hold = _text(fields.get(F_HOLD)) == "1"
    alert.repeat_count = int(_text(fields.get(F_REPEATS)) or 0)
    decided_ms = _text(fields.get(F_DECIDED_MS))
    if decided_ms:
        alert.adjudication.CopyFrom(
            alert_pb2.Adjudication(
                officer_id=_text(fields.get(F_OFFICER)),
                decision=int(_text(fields.get(F_DECISION)) or 0),  # type: ignore[arg-type]
                reason=_text(fields.get(F_REASON)),
                decided_at=ms_timestamp(int(decided_ms)),
            )
        )
    return alert


def decision_name(decision: int) -> str:
    return alert_pb2.Decision.Name(decision).removeprefix("DECISION_")  # type: ignore[arg-type]


# --- filters --------------------------------------------------------------------------------

MAX_FILTER_VALUES = 1000


def validate_filter(f: alert_pb2.AlertFilter) -> None:
    """Raises InvalidArgument naming what is wrong with ``f``."""
    for name in ("channels", "camera_ids", "locations", "deployment_ids", "categories"):
        if len(getattr(f, name)) > MAX_FILTER_VALUES:
            raise InvalidArgument(f"filter.{name} has more than {MAX_FILTER_VALUES} values")
    for category in f.categories:
        if category not in common_pb2.Category.values() or category == 0:
            raise InvalidArgument(f"filter.categories: {category} is not a known category")
    if not math.isfinite(f.min_score) or not -1.0 <= f.min_score <= 1.0:
        raise InvalidArgument(f"filter.min_score {f.min_score} is outside the score scale [-1, 1]")
    if f.min_severity not in common_pb2.Severity.values():
        raise InvalidArgument(f"filter.min_severity: {f.min_severity} is not a known severity")


def matches(alert: alert_pb2.Alert, f: alert_pb2.AlertFilter) -> bool:
    """Each field of the filter that is set must hold (a list: any of its values); an empty
    filter matches every alert. ``min_score`` 0 means no score condition."""
    event = alert.event
    return (
        (not f.channels or any(c in f.channels for c in alert.channels))
        and (not f.camera_ids or event.camera_id in f.camera_ids)
        and (not f.locations or event.location in f.locations)
        and (not f.categories or event.category in f.categories)
        and (not f.deployment_ids or event.deployment_id in f.deployment_ids)
        and (f.min_score == 0 or event.score >= f.min_score)
        and (not f.min_severity or alert.severity >= f.min_severity)
    )


def new_alert(
    *,
    alert_id: str,
    event: alert_pb2.MatchEvent,
    channels: tuple[str, ...],
    severity: int,
    raised_s: float,
    expires_s: float,
) -> alert_pb2.Alert:
    """The immutable part of a new alert (``pb``)."""
    return alert_pb2.Alert(
        alert_id=alert_id,
        event=event,
        severity=severity,  # type: ignore[arg-type]
        channels=channels,
        raised_at=to_timestamp(raised_s),
        state=PENDING,
        expires_at=to_timestamp(expires_s),
    )
