"""The Redis alert store against the real Redis: what is written (and where the crop lives),
the Lua hash chain agreeing with Python byte for byte, tamper detection, retention, and deleted
crops leaving the disk."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from lfr.v1 import alert_pb2, common_pb2
from lfr_alert import redis_store as rs
from lfr_alert.alerts import new_alert
from lfr_alert.audit_log import AuditLog
from lfr_alert.redis_store import RedisAlertStore
from lfr_alert.retention import RetentionJob
from lfr_alert.store import AuditEntry, NewAlert
from lfr_cli.testing import RedisInstance

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(
    redis_client: redis.Redis, redis_server: RedisInstance
) -> AsyncIterator[RedisAlertStore]:
    s = RedisAlertStore(redis_server.url, max_block_ms=200)
    yield s
    await s.close()


def new(n: int, *, crop: bytes = b"crop", cooldown_ms: int = 0, expires_ms: int = 0) -> NewAlert:
    event = alert_pb2.MatchEvent(
        event_id=f"ev-{n}",
        camera_id="cam-1",
        entry_id="entry-1",
        category=common_pb2.CATEGORY_WANTED_BY_COURTS,
        crop_jpeg=crop,
    )
    now = time.time()
    expires = expires_ms or int((now + 3600) * 1000)
    pb = new_alert(
        alert_id=f"alert-{n}",
        event=event,
        channels=("control-room",),
        severity=common_pb2.SEVERITY_HIGH,
        raised_s=now,
        expires_s=expires / 1000,
    ).SerializeToString()
    return NewAlert(
        alert_id=f"alert-{n}",
        event_id=f"ev-{n}",
        dedup_key="dep|wl|entry-1|cam-1",
        cooldown_ms=cooldown_ms,
        expires_ms=expires,
        pb=pb,
        audit=AuditEntry(f"rec-{n}", "lfr-alert", "alert.raised", {"alert_id": f"alert-{n}"}),
    )


async def test_publish_writes_alert_stream_entry_key_and_audit_together(
    store: RedisAlertStore, redis_client: redis.Redis
) -> None:
    crop = b"\xff\xd8 unique-crop-bytes-1"
    outcome = await store.publish(new(1, crop=crop))
    assert outcome.cursor and not outcome.replayed
    assert redis_client.xlen(rs.STREAM_KEY) == 1
    assert redis_client.get(rs.EVENT_PREFIX + "ev-1") == b"n:alert-1"
    assert redis_client.xlen(rs.AUDIT_STREAM_KEY) == 1
    # The crop is only inside the alert's own hash.
    holders = [
        key
        for key in redis_client.scan_iter()
        if crop in redis_client.dump(key)  # type: ignore[operator]
    ]
    assert holders == [rs.alert_key("alert-1").encode()]
    replay = await store.publish(new(1))
    assert replay.replayed and replay.alert_id == "alert-1"
    assert redis_client.xlen(rs.STREAM_KEY) == 1 and redis_client.xlen(rs.AUDIT_STREAM_KEY) == 1


async def test_cooldown_repeat_joins_the_first_alert_atomically(
    store: RedisAlertStore, redis_client: redis.Redis
) -> None:
    first = await store.publish(new(1, cooldown_ms=10_000))
    repeat = await store.publish(new(2, cooldown_ms=10_000, crop=b"second crop"))
    assert repeat.deduplicated and repeat.alert_id == first.alert_id
    alert = await store.get(first.alert_id)
    assert alert is not None and alert.repeat_count == 1
    assert redis_client.xlen(rs.STREAM_KEY) == 1
    # The repeat's crop is not kept anywhere.
    assert not any(b"second crop" in redis_client.dump(k) for k in redis_client.scan_iter())  # type: ignore[operator]


async def test_lua_and_python_hash_the_same_bytes(store: RedisAlertStore) -> None:
    log = AuditLog(store)
    awkward = [
        {},
        {"k": ""},
        {"ü": "é€𝄞", "a:b,": "1:2,3"},
        {"z": "x" * 1000, "a": "y" * 55, "m": "w" * 64},
        {str(i): str(i * i) for i in range(40)},
    ]
    for details in awkward:
        await log.append("faces.seen", "lfr-test/ünïcode", details)
    result = await log.verify()
    assert result.ok, result.problem
    assert result.records_checked == len(awkward)


async def test_a_repeated_append_with_the_same_event_id_is_stored_once(
    store: RedisAlertStore, redis_client: redis.Redis
) -> None:
    log = AuditLog(store)
    details = {"event_id": "watchlist:42", "entry_id": "e1"}
    first = await log.append("entry.enrolled", "lfr-watchlist", details)
    again = await log.append("entry.enrolled", "lfr-watchlist", details)
    assert again == first
    assert redis_client.xlen(rs.AUDIT_STREAM_KEY) == 1
    assert (await log.append("entry.removed", "lfr-watchlist", {"event_id": "w:43"})).seq == 2


async def test_tampering_with_a_record_in_redis_is_detected_and_named(
    store: RedisAlertStore, redis_client: redis.Redis
) -> None:
    log = AuditLog(store)
    records = [
        await log.append("deployment.started", "lfr-watchlist", {"deployment_id": f"d{i}"})
        for i in range(6)
    ]
    assert (await log.verify()).ok
    # Someone with access to Redis rewrites the stream, changing one record's details.
    entries: Any = redis_client.xrange(rs.AUDIT_STREAM_KEY)
    redis_client.delete(rs.AUDIT_STREAM_KEY)
    for entry_id, fields in entries:
        if fields[b"seq"] == b"4":
            fields[b"d.deployment_id"] = b"d-forged"
        redis_client.xadd(rs.AUDIT_STREAM_KEY, fields, id=entry_id)
    result = await log.verify()
    assert not result.ok
    assert result.first_broken_seq == 4
    assert result.first_broken_record_id == records[3].record_id
    assert "altered" in result.problem


async def test_a_deleted_audit_record_is_detected(
    store: RedisAlertStore, redis_client: redis.Redis
) -> None:
    log = AuditLog(store)
    records = [await log.append("faces.seen", "m", {"n": str(i)}) for i in range(4)]
    entries: Any = redis_client.xrange(rs.AUDIT_STREAM_KEY)
    second = entries[1][0]
    redis_client.xdel(rs.AUDIT_STREAM_KEY, second)
    result = await log.verify()
    assert not result.ok and result.first_broken_seq == 3
    assert result.first_broken_record_id == records[2].record_id
    assert "missing" in result.problem


async def test_retention_deletes_everything_of_an_expired_alert_and_audits_it(
    store: RedisAlertStore, redis_client: redis.Redis
) -> None:
    past = int((time.time() - 1) * 1000)
    for n in (1, 2, 3):
        await store.publish(new(n, expires_ms=past))
    audit = AuditEntry("h", "dc-1", "alert.legal_hold", {"alert_id": "alert-3"})
    await store.set_legal_hold("alert-3", True, audit)
    job = RetentionJob(store, interval_s=1, compact_interval_s=None)
    assert await job.sweep() == 2
    assert await store.get("alert-1") is None and await store.get("alert-2") is None
    assert await store.get("alert-3") is not None
    left = sorted(k.decode() for k in redis_client.scan_iter(rs.PREFIX + "*"))
    assert left == sorted(
        [
            rs.STREAM_KEY,
            rs.alert_key("alert-3"),
            rs.events_key("alert-3"),
            rs.EVENT_PREFIX + "ev-3",
        ]
    )
    assert redis_client.xlen(rs.STREAM_KEY) == 1
    actions = [r.action for _p, r in await store.read_audit("", 100)]
    assert actions.count("alert.deleted") == 2
    assert (await AuditLog(store).verify()).ok
    # Released from hold, it goes the way of the others at the next sweep.
    await store.set_legal_hold("alert-3", False, AuditEntry("h2", "dc-1", "alert.legal_hold"))
    assert await job.sweep() == 1


async def test_deleted_crops_leave_the_append_only_file(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with RedisInstance(tmp_path_factory.mktemp("redis-aof")) as private:
        s = RedisAlertStore(private.url)
        try:
            crop = b"\xff\xd8 crop-that-must-go-" + str(time.time()).encode()
            await s.publish(new(1, crop=crop, expires_ms=int((time.time() - 1) * 1000)))
            assert crop in private.aof_bytes()
            job = RetentionJob(s, interval_s=1, compact_interval_s=0)
            assert await job.sweep() == 1
            for _ in range(100):  # the rewrite runs in a forked child
                if crop not in private.aof_bytes():
                    break
                await asyncio.sleep(0.1)
            assert crop not in private.aof_bytes()
        finally:
            await s.close()
