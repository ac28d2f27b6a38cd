"""The alert service in process on the real Redis: filtered fan-out to 50 subscribers, resume
after a disconnect, slow-subscriber cut-off, cool-down, adjudication once, retention with legal
hold, and tamper detection through the RPC."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis
from grpc import aio

from lfr.common.server import RunningServer
from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2
from lfr_alert import redis_store as rs
from lfr_alert.server import build_server
from lfr_alert.settings import AlertSettings
from lfr_cli.testing import RedisInstance

pytestmark = pytest.mark.integration

CAMERAS = [f"cam-{i}" for i in range(5)]
LOCATIONS = ["station", "market", "stadium"]
CATEGORIES = [
    common_pb2.CATEGORY_WANTED_BY_COURTS,
    common_pb2.CATEGORY_SUSPECTED_SERIOUS_OFFENCE,
    common_pb2.CATEGORY_BAIL_OR_COURT_ORDER,
    common_pb2.CATEGORY_MISSING_AT_RISK,
    common_pb2.CATEGORY_RISK_OF_HARM,
]
# Built-in routing: the severity each category gets, and who else hears of it.
SEVERITY = {1: 3, 2: 3, 3: 2, 4: 3, 5: 4}


def event(n: int, **fields: Any) -> alert_pb2.MatchEvent:
    values: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "deployment_id": f"dep-{n % 2}",
        "camera_id": CAMERAS[n % 5],
        "location": LOCATIONS[n % 3],
        "watchlist_id": "wl-1",
        "entry_id": f"entry-{n}",
        "category": CATEGORIES[(n // 5) % 5],
        "score": 0.6 + (n % 7) * 0.05,
        "threshold": 0.6,
        "crop_jpeg": b"\xff\xd8crop-%d" % n,
    }
    values.update(fields)
    return alert_pb2.MatchEvent(**values)


@dataclass
class Served:
    server: RunningServer
    stub: alert_pb2_grpc.AlertServiceAsyncStub

    async def publish(self, n: int, **fields: Any) -> alert_pb2.PublishResponse:
        return await self.stub.Publish(event(n, **fields), timeout=10)

    def subscribe(self, subscriber_id: str, cursor: str = "", **filter_: Any) -> Any:
        request = alert_pb2.SubscribeRequest(
            subscriber_id=subscriber_id,
            filter=alert_pb2.AlertFilter(**filter_),
            resume_cursor=cursor,
        )
        return self.stub.Subscribe(request)


@pytest.fixture
async def serve(
    redis_client: redis.Redis, redis_server: RedisInstance
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    running: list[tuple[RunningServer, aio.Channel]] = []

    async def start(**overrides: Any) -> Served:
        settings = AlertSettings(port=0, redis_url=redis_server.url, **overrides)
        server = await build_server(settings)
        await server.start()
        assert await server.check_dependencies()
        channel = aio.insecure_channel(server.address)
        running.append((server, channel))
        return Served(server, alert_pb2_grpc.AlertServiceStub(channel))

    yield start
    for server, channel in running:
        await channel.close(None)
        await server.stop(0)


async def next_alert(call: Any, wait_s: float = 10.0) -> alert_pb2.Alert:
    message = await asyncio.wait_for(call.read(), wait_s)
    assert isinstance(message, alert_pb2.Alert), message
    return message


async def nothing_more(call: Any, wait_s: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(call.read(), wait_s)
    except TimeoutError:
        return True
    return False


def wanted(e: alert_pb2.MatchEvent, f: dict[str, Any]) -> bool:
    """The expected outcome of a filter, written out independently of the service's code."""
    severity = SEVERITY[e.category]
    channels = ["control-room"] + (["safeguarding"] if e.category == 4 else [])
    checks = [
        not f.get("camera_ids") or e.camera_id in f["camera_ids"],
        not f.get("locations") or e.location in f["locations"],
        not f.get("categories") or e.category in f["categories"],
        not f.get("deployment_ids") or e.deployment_id in f["deployment_ids"],
        not f.get("channels") or any(c in f["channels"] for c in channels),
        e.score >= f.get("min_score", 0) - 1e-6,
        severity >= f.get("min_severity", 0),
    ]
    return all(checks)


def fifty_filters() -> list[dict[str, Any]]:
    options: list[dict[str, Any]] = [
        {},
        {"camera_ids": ["cam-nowhere"]},
        {"channels": ["safeguarding"]},
        {"channels": ["control-room"]},
        {"min_severity": common_pb2.SEVERITY_CRITICAL},
        {"min_severity": common_pb2.SEVERITY_HIGH, "locations": ["market"]},
        {"deployment_ids": ["dep-1"]},
        {"deployment_ids": ["dep-0"], "min_score": 0.75},
    ]
    for score in (0.7, 0.8, 0.85, 0.9):
        options.append({"min_score": score})
    for cam in CAMERAS:
        options.append({"camera_ids": [cam]})
    for a, b in itertools.combinations(CAMERAS, 2):
        options.append({"camera_ids": [a, b]})
    for cat in CATEGORIES:
        options.append({"categories": [cat]})
        options.append({"categories": [cat], "camera_ids": [CAMERAS[cat % 5]]})
    for loc in LOCATIONS:
        options.append({"locations": [loc]})
        for cat in CATEGORIES[:4]:
            options.append({"locations": [loc], "categories": [cat]})
    assert len(options) >= 50
    return options[:50]


async def test_fifty_subscribers_each_receive_exactly_their_alerts(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    svc = await serve(cooldown_s=0)
    filters = fifty_filters()
    calls = [svc.subscribe(f"room-{i}", **f) for i, f in enumerate(filters)]
    await asyncio.gather(*(call.initial_metadata() for call in calls))  # all live now
    events = [event(n) for n in range(150)]
    ids = {}
    for e in events:
        ids[e.event_id] = (await svc.stub.Publish(e, timeout=10)).alert_id

    async def collect(call: Any, f: dict[str, Any]) -> tuple[list[str], list[str], bool]:
        expected = [ids[e.event_id] for e in events if wanted(e, f)]
        got = [(await next_alert(call)).alert_id for _ in expected]
        return expected, got, await nothing_more(call)

    results = await asyncio.gather(*(collect(c, f) for c, f in zip(calls, filters, strict=True)))
    for call in calls:
        call.cancel()
    for f, (expected, got, quiet) in zip(filters, results, strict=True):
        assert got == expected, f
        assert quiet, f"{f}: received more than its alerts"
    assert sum(1 for expected, _g, _q in results if not expected) == 1  # the nowhere camera


async def test_a_subscriber_that_misses_20_alerts_resumes_and_gets_them_once_in_order(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    svc = await serve(cooldown_s=0)
    call = svc.subscribe("room-1")
    await call.initial_metadata()
    before = [(await svc.publish(n)).alert_id for n in range(5)]
    received = [await next_alert(call) for _ in before]
    assert [a.alert_id for a in received] == before
    call.cancel()  # the control room drops off ...
    missed = [(await svc.publish(n)).alert_id for n in range(5, 25)]  # ... and misses 20
    resumed = svc.subscribe("room-1", cursor=received[-1].cursor)
    got = [await next_alert(resumed) for _ in missed]
    assert [a.alert_id for a in got] == missed
    live = (await svc.publish(99)).alert_id
    assert (await next_alert(resumed)).alert_id == live
    assert await nothing_more(resumed)
    resumed.cancel()


async def test_a_slow_subscriber_is_cut_off_while_a_fast_one_keeps_up(
    serve: Callable[..., Awaitable[Served]],
) -> None:
    svc = await serve(cooldown_s=0, subscriber_queue_size=8)
    fast = svc.subscribe("fast")
    slow = svc.subscribe("slow")
    await fast.initial_metadata()
    await slow.initial_metadata()
    total = 80
    crop = b"x" * 150_000  # the slow one's HTTP/2 window fills, then its queue
    fast_got: list[str] = []
    slow_got: list[alert_pb2.Alert] = []

    async def fast_reader() -> None:
        while len(fast_got) < total:
            fast_got.append((await next_alert(fast)).alert_id)

    async def slow_reader() -> grpc.aio.AioRpcError:
        await asyncio.sleep(1.0)  # stalls, then reads slowly
        while True:
            try:
                slow_got.append(await next_alert(slow))
            except grpc.aio.AioRpcError as err:
                return err
            await asyncio.sleep(0.02)

    readers = asyncio.gather(fast_reader(), slow_reader())
    published = [(await svc.publish(n, crop_jpeg=crop)).alert_id for n in range(total)]
    _, err = await asyncio.wait_for(readers, 30)
    assert fast_got == published  # the fast one was not held back
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(slow_got) < total
    resume_from = slow_got[-1].cursor if slow_got else ""
    assert f"resume from cursor {resume_from}" in (err.details() or "")
    fast.cancel()


async def test_cooldown_adjudication_once_and_retention_with_legal_hold(
    serve: Callable[..., Awaitable[Served]], redis_client: redis.Redis
) -> None:
    svc = await serve(cooldown_s=30, retention_s=1.0, retention_sweep_interval_s=0.2)
    same = {"entry_id": "same", "camera_id": "cam-1", "deployment_id": "dep-1"}
    first = await svc.publish(1, **same)
    again = await svc.publish(2, **same)
    assert again.deduplicated and again.alert_id == first.alert_id
    assert redis_client.xlen(rs.STREAM_KEY) == 1  # one alert
    other = await svc.publish(3, entry_id="other")
    decide = alert_pb2.AdjudicateRequest(
        alert_id=first.alert_id, officer_id="pc-1", decision=alert_pb2.DECISION_REJECT
    )
    assert (await svc.stub.Adjudicate(decide)).state == alert_pb2.ALERT_STATE_REJECTED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await svc.stub.Adjudicate(decide)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "REJECT by officer pc-1" in (info.value.details() or "")
    await svc.stub.SetLegalHold(
        alert_pb2.SetLegalHoldRequest(
            alert_id=first.alert_id, legal_hold=True, officer_id="dc-1", reason="appeal"
        )
    )
    await asyncio.sleep(1.8)
    kept = await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=first.alert_id))
    assert kept.legal_hold and kept.repeat_count == 1
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=other.alert_id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    deleted = await svc.stub.GetAuditLog(alert_pb2.GetAuditLogRequest(action_prefix="alert.del"))
    assert [dict(r.details)["alert_id"] for r in deleted.records] == [other.alert_id]
    verdict = await svc.stub.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest())
    assert verdict.ok and verdict.records_checked == 5  # raised x2, adjudicated, hold, deleted


async def test_verify_audit_log_names_a_record_altered_in_redis(
    serve: Callable[..., Awaitable[Served]], redis_client: redis.Redis
) -> None:
    svc = await serve()
    appended = [
        await svc.stub.AppendAudit(
            alert_pb2.AppendAuditRequest(
                actor="lfr-watchlist", action="threshold.set", details={"threshold": "0.6"}
            )
        )
        for _ in range(5)
    ]
    entries: Any = redis_client.xrange(rs.AUDIT_STREAM_KEY)
    redis_client.delete(rs.AUDIT_STREAM_KEY)
    for entry_id, fields in entries:
        if fields[b"id"] == appended[1].record_id.encode():
            fields[b"d.threshold"] = b"0.3"  # quietly lowered
        redis_client.xadd(rs.AUDIT_STREAM_KEY, fields, id=entry_id)
    verdict = await svc.stub.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest())
    assert not verdict.ok
    assert verdict.first_broken_seq == appended[1].seq == 2
    assert verdict.first_broken_record_id == appended[1].record_id
