"""Request validation of the watchlist service: every governance and deployment field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from lfr.common.errors import ConfigError, InvalidArgument
from lfr.common.timeutil import to_timestamp
from lfr.v1 import common_pb2, watchlist_pb2
from lfr_watchlist.model import check_id, new_id, snapshot_of
from lfr_watchlist.requests import (
    MISSING_FIELD,
    THRESHOLD_BELOW_FLOOR,
    algorithm_of,
    parse_create_deployment,
    parse_governance,
    parse_threshold,
)
from lfr_watchlist.settings import WatchlistSettings, load

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
MAX_TTL = timedelta(days=365)


def governance(**overrides: object) -> watchlist_pb2.Governance:
    fields: dict[str, object] = {
        "category": common_pb2.CATEGORY_WANTED_BY_COURTS,
        "legal_basis_ref": "warrant 42/2030",
        "image_source": "custody photo",
        "approver": "Insp. Morse",
        "expires_at": to_timestamp(NOW + timedelta(days=30)),
        "subject_ref": "PNC-123",
    }
    fields.update(overrides)
    return watchlist_pb2.Governance(**fields)  # type: ignore[arg-type]


def enrol_request(g: watchlist_pb2.Governance | None) -> watchlist_pb2.EnrolRequest:
    request = watchlist_pb2.EnrolRequest(watchlist_id="wl", images=[b"x"])
    if g is not None:
        request.governance.CopyFrom(g)
    return request


def test_complete_governance_is_accepted() -> None:
    g = parse_governance(enrol_request(governance()), now=NOW, max_ttl=MAX_TTL)
    assert g.category == common_pb2.CATEGORY_WANTED_BY_COURTS
    assert g.approver == "Insp. Morse"
    assert g.expires_at == NOW + timedelta(days=30)
    assert g.image_date is None
    assert g.subject_ref == "PNC-123"


@pytest.mark.parametrize(
    ("field", "empty"),
    [
        ("category", common_pb2.CATEGORY_UNSPECIFIED),
        ("legal_basis_ref", ""),
        ("image_source", "   "),
        ("approver", ""),
    ],
)
def test_each_missing_governance_field_is_named(field: str, empty: object) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_governance(enrol_request(governance(**{field: empty})), now=NOW, max_ttl=MAX_TTL)
    assert f"governance.{field} is required" in info.value.message
    assert info.value.reason == MISSING_FIELD


def test_missing_expiry_and_missing_governance_are_named() -> None:
    g = governance()
    g.ClearField("expires_at")
    with pytest.raises(InvalidArgument, match=r"governance\.expires_at is required"):
        parse_governance(enrol_request(g), now=NOW, max_ttl=MAX_TTL)
    with pytest.raises(InvalidArgument, match=r"^governance is required"):
        parse_governance(enrol_request(None), now=NOW, max_ttl=MAX_TTL)


def test_unknown_category_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"governance\.category 99 is not one of"):
        parse_governance(enrol_request(governance(category=99)), now=NOW, max_ttl=MAX_TTL)


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        (NOW, "is not in the future"),
        (NOW - timedelta(seconds=1), "is not in the future"),
        (NOW + MAX_TTL + timedelta(seconds=1), "more than 365 days away"),
    ],
)
def test_expiry_must_be_in_the_future_and_within_the_maximum(
    expires: datetime, message: str
) -> None:
    request = enrol_request(governance(expires_at=to_timestamp(expires)))
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_governance(request, now=NOW, max_ttl=MAX_TTL)
    assert "governance.expires_at" in info.value.message


def test_expiry_at_the_maximum_is_accepted() -> None:
    request = enrol_request(governance(expires_at=to_timestamp(NOW + MAX_TTL)))
    assert parse_governance(request, now=NOW, max_ttl=MAX_TTL).expires_at == NOW + MAX_TTL


def test_image_date_is_kept_and_may_not_lie_in_the_future() -> None:
    taken = NOW - timedelta(days=3)
    g = parse_governance(
        enrol_request(governance(image_date=to_timestamp(taken))), now=NOW, max_ttl=MAX_TTL
    )
    assert g.image_date == taken
    future = enrol_request(governance(image_date=to_timestamp(NOW + timedelta(days=1))))
    with pytest.raises(InvalidArgument, match=r"governance\.image_date .* is in the future"):
        parse_governance(future, now=NOW, max_ttl=MAX_TTL)


def test_text_fields_are_bounded_and_printable() -> None:
    with pytest.raises(InvalidArgument, match=r"governance\.approver is longer than"):
        parse_governance(enrol_request(governance(approver="a" * 600)), now=NOW, max_ttl=MAX_TTL)
    with pytest.raises(InvalidArgument, match=r"governance\.subject_ref holds control"):
        parse_governance(enrol_request(governance(subject_ref="a\nb")), now=NOW, max_ttl=MAX_TTL)


# --- thresholds ----------------------------------------------------------------------------------


def test_zero_threshold_means_the_default() -> None:
    assert parse_threshold(0.0, default=0.8, floor=0.7) == (0.8, True)


def test_threshold_below_the_floor_is_refused_with_its_reason() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_threshold(0.5, default=0.8, floor=0.7)
    assert info.value.reason == THRESHOLD_BELOW_FLOOR
    assert "below the configured floor 0.7" in info.value.message


def test_threshold_at_the_floor_survives_float32_transport() -> None:
    as_sent = float(np.float32(0.7))  # 0.699999988...: what the proto field delivers
    assert as_sent < 0.7
    assert parse_threshold(as_sent, default=0.8, floor=0.7) == (0.7, False)


@pytest.mark.parametrize("value", [1.5, float("nan"), float("inf")])
def test_impossible_thresholds_are_refused(value: float) -> None:
    with pytest.raises(InvalidArgument):
        parse_threshold(value, default=0.8, floor=0.7)


def test_settings_keep_the_default_above_the_floor() -> None:
    settings = WatchlistSettings()
    assert settings.default_threshold >= settings.threshold_floor
    with pytest.raises(ValueError, match="below threshold_floor"):
        WatchlistSettings(default_threshold=0.6, threshold_floor=0.7)


# --- deployments ---------------------------------------------------------------------------------


def deployment_request(**overrides: object) -> watchlist_pb2.CreateDeploymentRequest:
    fields: dict[str, object] = {
        "authorising_officer": "Supt. Lestrade",
        "purpose": "warrant arrests",
        "location": "Oxford Circus",
        "camera_ids": ["cam-1", "cam-2"],
        "watchlist_id": "wl",
        "threshold": 0.0,
        "start_time": to_timestamp(NOW),
        "end_time": to_timestamp(NOW + timedelta(hours=4)),
    }
    fields.update(overrides)
    return watchlist_pb2.CreateDeploymentRequest(**fields)  # type: ignore[arg-type]


def parse(request: watchlist_pb2.CreateDeploymentRequest) -> object:
    return parse_create_deployment(
        request,
        now=NOW,
        default_threshold=0.8,
        threshold_floor=0.7,
        max_duration=timedelta(hours=24),
    )


def test_complete_deployment_request_is_accepted() -> None:
    parsed = parse_create_deployment(
        deployment_request(threshold=0.85),
        now=NOW,
        default_threshold=0.8,
        threshold_floor=0.7,
        max_duration=timedelta(hours=24),
    )
    assert parsed.camera_ids == ("cam-1", "cam-2")
    assert parsed.threshold == 0.85
    assert not parsed.threshold_defaulted
    assert parsed.end_time - parsed.start_time == timedelta(hours=4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"authorising_officer": ""}, "authorising_officer is required"),
        ({"purpose": ""}, "purpose is required"),
        ({"location": " "}, "location is required"),
        ({"camera_ids": []}, "camera_ids needs at least one camera"),
        ({"camera_ids": ["a", ""]}, r"camera_ids\[1\] is empty"),
        ({"camera_ids": ["a", "a"]}, r"camera_ids\[1\] 'a' is repeated"),
        ({"watchlist_id": ""}, "watchlist_id is required"),
        ({"watchlist_id": "a:b"}, "watchlist_id 'a:b' is not a valid id"),
        ({"threshold": 0.6}, "below the configured floor"),
        ({"deployment_id": "bad id"}, "deployment_id 'bad id' is not a valid id"),
        ({"end_time": to_timestamp(NOW)}, "end_time .* is not after start_time"),
        (
            {
                "start_time": to_timestamp(NOW - timedelta(hours=3)),
                "end_time": to_timestamp(NOW - timedelta(hours=1)),
            },
            "end_time .* is in the past",
        ),
        ({"end_time": to_timestamp(NOW + timedelta(hours=25))}, "longer than the configured"),
    ],
)
def test_each_invalid_deployment_field_is_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(deployment_request(**overrides))


def test_missing_window_is_named() -> None:
    request = deployment_request()
    request.ClearField("start_time")
    with pytest.raises(InvalidArgument, match="start_time is required"):
        parse(request)
    request = deployment_request()
    request.ClearField("end_time")
    with pytest.raises(InvalidArgument, match="end_time is required"):
        parse(request)


# --- ids, algorithms, snapshots ------------------------------------------------------------------


def test_ids_are_key_safe_and_generated_ids_sort_by_creation() -> None:
    assert check_id("wl-1_a.b", "x") == "wl-1_a.b"
    for bad in ("", "a:b", "a b", "-a", "a" * 65, "a*"):
        with pytest.raises(InvalidArgument):
            check_id(bad, "x")
    first = new_id("e")
    second = new_id("e")
    assert check_id(first, "x") == first
    assert first != second
    assert first[:13] <= second[:13]  # the time part


def test_algorithm_defaults_to_flat() -> None:
    assert algorithm_of(watchlist_pb2.INDEX_ALGORITHM_UNSPECIFIED) == "FLAT"
    assert algorithm_of(watchlist_pb2.INDEX_ALGORITHM_HNSW) == "HNSW"
    with pytest.raises(InvalidArgument):
        algorithm_of(7)


def test_snapshot_hash_depends_on_ids_and_versions_not_order() -> None:
    a = snapshot_of([("e2", "v1"), ("e1", "v1")], NOW)
    b = snapshot_of([("e1", "v1"), ("e2", "v1")], NOW)
    assert a.content_hash == b.content_hash
    assert a.entry_ids == ("e1", "e2")
    assert a.entry_count == 2
    assert snapshot_of([("e1", "v1"), ("e2", "v2")], NOW).content_hash != a.content_hash
    assert snapshot_of([("e1", "v1")], NOW).content_hash != a.content_hash
    assert len(a.content_hash) == 64


def test_bad_settings_fail_fast_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFR_WATCHLIST_PURGE_INTERVAL_S", "0")
    with pytest.raises(ConfigError, match="LFR_WATCHLIST_PURGE_INTERVAL_S"):
        load()
    monkeypatch.delenv("LFR_WATCHLIST_PURGE_INTERVAL_S")
    monkeypatch.setenv("LFR_WATCHLIST_REDIS_URL", "127.0.0.1:6379")
    with pytest.raises(ConfigError, match="redis_url must be a redis://"):
        load()
