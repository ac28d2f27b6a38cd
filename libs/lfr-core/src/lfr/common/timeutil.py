"""Conversions between protobuf Timestamps and aware datetimes / epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def now() -> datetime:
    return datetime.now(UTC)


def to_timestamp(value: datetime | float) -> Timestamp:
    ts = Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value.astimezone(UTC))
    else:
        ts.FromNanoseconds(int(value * 1e9))
    return ts


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def to_epoch(ts: Timestamp) -> float:
    return float(ts.seconds) + ts.nanos / 1e9


def is_set(ts: Timestamp) -> bool:
    return ts.seconds != 0 or ts.nanos != 0
