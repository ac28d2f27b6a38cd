"""The audit hash chain: canonical form, hashing and verification (pure; the Lua twin is
checked against it in tests/integration/test_alert_store.py)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lfr.common.errors import InvalidArgument
from lfr.v1 import alert_pb2
from lfr_alert.audit_chain import GENESIS, canonical, make_record, validate_append, verify


def chain(n: int) -> list[alert_pb2.AuditRecord]:
    records: list[alert_pb2.AuditRecord] = []
    for seq in range(1, n + 1):
        records.append(
            make_record(
                seq=seq,
                record_id=f"r{seq}",
                time_ms=1_700_000_000_000 + seq,
                actor="lfr-test",
                action="faces.seen",
                details={"count": str(seq), "camera_id": "cam-1"},
                prev_hash=records[-1].hash if records else GENESIS,
            )
        )
    return records


async def aiter(records: Iterable[alert_pb2.AuditRecord]) -> AsyncIterator[alert_pb2.AuditRecord]:
    for record in records:
        yield record


def test_canonical_form_is_length_prefixed_and_key_ordered() -> None:
    form = canonical(
        seq=7, record_id="r", time_ms=5, actor="a", action="x.y", details={"b": "2", "a": "é"}
    )
    assert form == b"12:lfr.audit.v1,1:7,1:r,1:5,1:a,3:x.y,1:2,1:a,2:\xc3\xa9,1:b,1:2,"
    record = make_record(
        seq=7,
        record_id="r",
        time_ms=5,
        actor="a",
        action="x.y",
        details={"b": "2", "a": "é"},
        prev_hash=GENESIS,
    )
    assert record.hash == hashlib.sha256(GENESIS.encode() + form).hexdigest()


text = st.text(max_size=20)


@given(
    st.dictionaries(text, text, max_size=4),
    st.dictionaries(text, text, max_size=4),
    text,
    text,
)
def test_different_records_never_share_a_canonical_form(
    d1: dict[str, str], d2: dict[str, str], actor1: str, actor2: str
) -> None:
    f1 = canonical(seq=1, record_id="r", time_ms=1, actor=actor1, action="a.b", details=d1)
    f2 = canonical(seq=1, record_id="r", time_ms=1, actor=actor2, action="a.b", details=d2)
    assert (f1 == f2) == (d1 == d2 and actor1 == actor2)


async def test_an_intact_chain_verifies() -> None:
    records = chain(5)
    result = await verify(aiter(records), (5, records[-1].hash))
    assert result.ok and result.records_checked == 5


async def test_an_empty_log_verifies() -> None:
    assert (await verify(aiter([]), None)).ok


async def test_an_altered_record_is_named() -> None:
    records = chain(5)
    records[2].details["count"] = "300"
    result = await verify(aiter(records), (5, records[-1].hash))
    assert not result.ok
    assert (result.first_broken_seq, result.first_broken_record_id) == (3, "r3")
    assert "altered" in result.problem and result.records_checked == 2


async def test_a_rehashed_record_breaks_the_link_to_the_next() -> None:
    records = chain(5)
    forged = make_record(
        seq=3,
        record_id="r3",
        time_ms=records[2].time.ToMilliseconds(),
        actor="mallory",
        action="faces.seen",
        details={},
        prev_hash=records[1].hash,
    )
    records[2] = forged
    result = await verify(aiter(records), (5, records[-1].hash))
    assert (result.first_broken_seq, result.first_broken_record_id) == (4, "r4")
    assert "prev_hash" in result.problem


async def test_a_deleted_record_is_a_gap() -> None:
    records = chain(5)
    del records[1]
    result = await verify(aiter(records), (5, records[-1].hash))
    assert (result.first_broken_seq, result.first_broken_record_id) == (3, "r3")
    assert "2..2 are missing" in result.problem


async def test_records_removed_from_the_end_are_caught_by_the_head() -> None:
    records = chain(5)
    result = await verify(aiter(records[:3]), (5, records[-1].hash))
    assert not result.ok and result.first_broken_seq == 4
    assert "chain head says seq 5" in result.problem


@pytest.mark.parametrize(
    ("actor", "action", "details"),
    [
        ("", "a.b", {}),
        ("x" * 200, "a.b", {}),
        ("a", "Deployment.Started", {}),
        ("a", "started", {}),
        ("a", "a.b", {"": "v"}),
        ("a", "a.b", {"k": "v" * 5000}),
        ("a", "a.b", {str(i): "v" for i in range(100)}),
    ],
)
def test_implausible_records_are_refused(actor: str, action: str, details: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument):
        validate_append(actor, action, details)
