"""AlertService over real in-process gRPC (port 0) with the in-memory store: health, reflection,
and every RPC's answers and errors. The same behaviour against the real Redis is in
tests/integration/test_alert_*.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lfr.common.audit import GrpcAuditSink
from lfr.common.errors import InvalidArgument
from lfr.common.server import RunningServer
from lfr.common.timeutil import to_timestamp
from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2
from lfr_alert.memory_store import InMemoryAlertStore
from lfr_alert.server import SERVICE_NAME, AlertDeps, build_server
from lfr_alert.servicer import ACKED_CURSOR_KEY, START_CURSOR_KEY
from lfr_alert.settings import AlertSettings

CROP = b"\xff\xd8\xff\xe0 not really a jpeg"


def event(n: int, **fields: Any) -> alert_pb2.MatchEvent:
    values: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "deployment_id": "dep-1",
        "camera_id": "cam-1",
        "location": "high-street",
        "watchlist_id": "wl-1",
        "entry_id": f"entry-{n}",
        "subject_ref": f"ref-{n}",
        "category": common_pb2.CATEGORY_WANTED_BY_COURTS,
        "score": 0.82,
        "threshold": 0.6,
        "crop_jpeg": CROP,
        "model_version": "dlib-v1",
    }
    values.update(fields)
    return alert_pb2.MatchEvent(**values)


@dataclass
class Served:
    server: RunningServer
    store: InMemoryAlertStore
    channel: aio.Channel
    stub: alert_pb2_grpc.AlertServiceAsyncStub

    async def publish(self, n: int, **fields: Any) -> alert_pb2.PublishResponse:
        return await self.stub.Publish(event(n, **fields), timeout=5)


Factory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Factory]:
    started: list[Served] = []

    async def start(**overrides: Any) -> Served:
        settings = AlertSettings(port=0, health_interval_s=0.2, **overrides)
        store = InMemoryAlertStore()
        server = await build_server(settings, AlertDeps(store=store))
        await server.start()
        await server.check_dependencies()
        channel = aio.insecure_channel(server.address)
        served = Served(server, store, channel, alert_pb2_grpc.AlertServiceStub(channel))
        started.append(served)
        return served

    yield start
    for served in started:
        await served.channel.close(None)
        await served.server.stop(0)


@pytest.fixture
async def svc(serve: Factory) -> Served:
    return await serve()


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def reason(err: grpc.aio.AioRpcError) -> str:
    metadata: Any = err.trailing_metadata() or ()
    return str(dict(metadata).get("lfr-reason", ""))


async def next_alert(call: Any, wait_s: float = 5.0) -> alert_pb2.Alert:
    message = await asyncio.wait_for(call.read(), wait_s)
    assert isinstance(message, alert_pb2.Alert), message
    return message


async def take(call: Any, n: int) -> list[alert_pb2.Alert]:
    return [await next_alert(call) for _ in range(n)]


# --- health and reflection ------------------------------------------------------------------


async def test_health_is_not_serving_until_the_store_answers() -> None:
    store = InMemoryAlertStore()
    store.available = False
    server = await build_server(AlertSettings(port=0), AlertDeps(store=store))
    await server.start()
    try:
        async with aio.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
            assert not await server.check_dependencies()
            reply = await health.Check(request, timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            store.available = True
            assert await server.check_dependencies()
            reply = await health.Check(request, timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


async def test_reflection_lists_the_service(svc: Served) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(svc.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


# --- Publish --------------------------------------------------------------------------------


async def test_publish_stores_a_routed_alert_with_its_crop(svc: Served) -> None:
    reply = await svc.publish(1, category=common_pb2.CATEGORY_MISSING_AT_RISK)
    assert reply.alert_id and not reply.replayed and not reply.deduplicated
    alert = await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=reply.alert_id), timeout=5)
    assert alert.event.crop_jpeg == CROP
    assert alert.state == alert_pb2.ALERT_STATE_PENDING
    # Built-in rules: missing persons go to safeguarding as well, at HIGH.
    assert list(alert.channels) == ["control-room", "safeguarding"]
    assert alert.severity == common_pb2.SEVERITY_HIGH
    retention = alert.expires_at.ToSeconds() - alert.raised_at.ToSeconds()
    assert retention == pytest.approx(24 * 3600, abs=1)
    assert alert.cursor


async def test_publish_is_idempotent_by_event_id(svc: Served) -> None:
    first = await svc.publish(1)
    again = await svc.publish(1, score=0.99)
    assert again.alert_id == first.alert_id and again.replayed
    listed = await svc.stub.ListAlerts(alert_pb2.ListAlertsRequest(), timeout=5)
    assert len(listed.alerts) == 1
    raised = await svc.stub.GetAuditLog(
        alert_pb2.GetAuditLogRequest(action_prefix="alert.raised"), timeout=5
    )
    assert len(raised.records) == 1


async def test_repeat_within_the_cooldown_joins_the_first_alert(serve: Factory) -> None:
    svc = await serve(cooldown_s=0.4)
    first = await svc.publish(1, entry_id="e")
    repeat = await svc.publish(2, entry_id="e")
    assert repeat.alert_id == first.alert_id and repeat.deduplicated and not repeat.replayed
    replay_of_repeat = await svc.publish(2, entry_id="e")
    assert replay_of_repeat.replayed and replay_of_repeat.deduplicated
    other_camera = await svc.publish(3, entry_id="e", camera_id="cam-2")
    assert other_camera.alert_id != first.alert_id and not other_camera.deduplicated
    alert = await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=first.alert_id), timeout=5)
    assert alert.repeat_count == 1
    await asyncio.sleep(0.5)
    later = await svc.publish(4, entry_id="e")
    assert later.alert_id != first.alert_id and not later.deduplicated


async def test_cooldown_zero_turns_deduplication_off(serve: Factory) -> None:
    svc = await serve(cooldown_s=0)
    first = await svc.publish(1, entry_id="e")
    second = await svc.publish(2, entry_id="e")
    assert second.alert_id != first.alert_id


@pytest.mark.parametrize(
    ("fields", "expected_reason"),
    [
        ({"event_id": ""}, "INVALID_ARGUMENT"),
        ({"camera_id": ""}, "INVALID_ARGUMENT"),
        ({"deployment_id": ""}, "INVALID_ARGUMENT"),
        ({"entry_id": "", "subject_ref": ""}, "INVALID_ARGUMENT"),
        ({"category": common_pb2.CATEGORY_UNSPECIFIED}, "INVALID_ARGUMENT"),
        ({"category": 99}, "INVALID_ARGUMENT"),
        ({"score": 1.5}, "INVALID_ARGUMENT"),
        ({"score": float("nan")}, "INVALID_ARGUMENT"),
        ({"score": 0.5, "threshold": 0.6}, "NOT_A_MATCH"),
        ({"crop_jpeg": b"x" * 2048}, "CROP_TOO_LARGE"),
        ({"event_id": "x" * 200}, "INVALID_ARGUMENT"),
    ],
)
async def test_publish_refuses_bad_events(
    serve: Factory, fields: dict[str, Any], expected_reason: str
) -> None:
    svc = await serve(max_crop_bytes=1024)
    err = await rpc_error(svc.publish(1, **fields))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(err) == expected_reason
    assert not svc.store.audit_records  # nothing was written


async def test_publish_is_unavailable_while_the_store_is_down(svc: Served) -> None:
    svc.store.available = False
    err = await rpc_error(svc.publish(1))
    assert err.code() == grpc.StatusCode.UNAVAILABLE


# --- Subscribe and Ack ----------------------------------------------------------------------


async def test_subscribe_new_only_receives_matching_alerts_live(svc: Served) -> None:
    await svc.publish(0)  # before the subscription: not "new"
    request = alert_pb2.SubscribeRequest(
        subscriber_id="room-1", filter=alert_pb2.AlertFilter(camera_ids=["cam-2"])
    )
    call = svc.stub.Subscribe(request)
    metadata = dict(await call.initial_metadata())
    assert metadata[START_CURSOR_KEY] and metadata[ACKED_CURSOR_KEY] == ""
    await svc.publish(1, camera_id="cam-1")
    wanted = await svc.publish(2, camera_id="cam-2")
    got = await take(call, 1)
    assert [a.alert_id for a in got] == [wanted.alert_id]
    assert got[0].event.crop_jpeg == CROP
    call.cancel()


async def test_subscribe_resumes_after_a_cursor_and_from_the_oldest(svc: Served) -> None:
    ids = [(await svc.publish(n)).alert_id for n in range(5)]
    call = svc.stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id="s", resume_cursor="0"))
    everything = await take(call, 5)
    call.cancel()
    assert [a.alert_id for a in everything] == ids
    call = svc.stub.Subscribe(
        alert_pb2.SubscribeRequest(subscriber_id="s", resume_cursor=everything[1].cursor)
    )
    rest = await take(call, 3)
    ids.append((await svc.publish(99)).alert_id)  # then live, with no gap and no repeat
    rest += await take(call, 1)
    call.cancel()
    assert [a.alert_id for a in rest] == ids[2:]


@pytest.mark.parametrize(
    "request_",
    [
        alert_pb2.SubscribeRequest(subscriber_id=""),
        alert_pb2.SubscribeRequest(subscriber_id="s", resume_cursor="yesterday"),
        alert_pb2.SubscribeRequest(subscriber_id="s", filter=alert_pb2.AlertFilter(min_score=2.0)),
        alert_pb2.SubscribeRequest(
            subscriber_id="s",
            filter=alert_pb2.AlertFilter(categories=[42]),  # type: ignore[list-item]
        ),
    ],
)
async def test_subscribe_refuses_bad_requests(
    svc: Served, request_: alert_pb2.SubscribeRequest
) -> None:
    call = svc.stub.Subscribe(request_, timeout=5)
    err = await rpc_error(call.read())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_slow_subscriber_is_cut_off_and_a_fast_one_is_not(serve: Factory) -> None:
    svc = await serve(subscriber_queue_size=4)
    fast = svc.stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id="fast"))
    slow = svc.stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id="slow"))
    await fast.initial_metadata()
    await slow.initial_metadata()
    big = b"x" * 200_000  # fills the HTTP/2 window of the subscriber that does not read
    received: list[alert_pb2.Alert] = []

    async def drain() -> None:
        while len(received) < 60:
            received.append(await next_alert(fast))

    reader = asyncio.create_task(drain())
    ids = [(await svc.publish(n, crop_jpeg=big)).alert_id for n in range(60)]
    await asyncio.wait_for(reader, 10)
    assert [a.alert_id for a in received] == ids
    got_before_cut: list[alert_pb2.Alert] = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        while True:
            got_before_cut.append(await next_alert(slow))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason(info.value) == "SUBSCRIBER_TOO_SLOW"
    assert len(got_before_cut) < 60
    last = got_before_cut[-1].cursor if got_before_cut else ""
    assert f"resume from cursor {last}" in (info.value.details() or "")
    fast.cancel()
    # Resuming from the cursor gives the rest, exactly once.
    resumed = svc.stub.Subscribe(
        alert_pb2.SubscribeRequest(subscriber_id="slow", resume_cursor=last or "0")
    )
    rest = await take(resumed, 60 - len(got_before_cut))
    resumed.cancel()
    assert [a.alert_id for a in got_before_cut + rest] == ids


async def test_ack_records_the_last_cursor_per_subscriber(svc: Served) -> None:
    first, second = await svc.publish(1), await svc.publish(2)
    await svc.stub.Ack(alert_pb2.AckRequest(subscriber_id="s", alert_id=second.alert_id))
    await svc.stub.Ack(alert_pb2.AckRequest(subscriber_id="s", alert_id=first.alert_id))
    second_alert = await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=second.alert_id))
    call = svc.stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id="s"))
    metadata = dict(await call.initial_metadata())
    call.cancel()
    assert metadata[ACKED_CURSOR_KEY] == second_alert.cursor  # an older ack never moves it back
    err = await rpc_error(
        svc.stub.Ack(alert_pb2.AckRequest(subscriber_id="s", alert_id="nope"), timeout=5)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(svc.stub.Ack(alert_pb2.AckRequest(alert_id="x"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- Adjudicate, GetAlert, ListAlerts, SetLegalHold ------------------------------------------


async def test_adjudicate_once_and_refuse_the_second_showing_the_first(svc: Served) -> None:
    alert_id = (await svc.publish(1)).alert_id
    decided = await svc.stub.Adjudicate(
        alert_pb2.AdjudicateRequest(
            alert_id=alert_id,
            officer_id="pc-123",
            decision=alert_pb2.DECISION_CONFIRM,
            reason="stopped and identified",
        ),
        timeout=5,
    )
    assert decided.state == alert_pb2.ALERT_STATE_CONFIRMED
    assert decided.adjudication.officer_id == "pc-123"
    assert decided.adjudication.decided_at.seconds > 0
    err = await rpc_error(
        svc.stub.Adjudicate(
            alert_pb2.AdjudicateRequest(
                alert_id=alert_id, officer_id="pc-999", decision=alert_pb2.DECISION_REJECT
            ),
            timeout=5,
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err) == "ALREADY_ADJUDICATED"
    assert "CONFIRM by officer pc-123" in (err.details() or "")
    assert "stopped and identified" in (err.details() or "")
    stored = await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=alert_id))
    assert stored.adjudication.officer_id == "pc-123"
    audit = await svc.stub.GetAuditLog(
        alert_pb2.GetAuditLogRequest(action_prefix="alert.adjudicated")
    )
    assert len(audit.records) == 1
    assert audit.records[0].actor == "pc-123"
    assert dict(audit.records[0].details)["decision"] == "CONFIRM"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            alert_pb2.AdjudicateRequest(alert_id="a", officer_id="o"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            alert_pb2.AdjudicateRequest(alert_id="a", decision=alert_pb2.DECISION_REJECT),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (
            alert_pb2.AdjudicateRequest(
                alert_id="missing", officer_id="o", decision=alert_pb2.DECISION_REJECT
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
    ],
)
async def test_adjudicate_refuses_bad_requests(
    svc: Served, request_: alert_pb2.AdjudicateRequest, code: grpc.StatusCode
) -> None:
    err = await rpc_error(svc.stub.Adjudicate(request_, timeout=5))
    assert err.code() == code


async def test_get_alert_answers_not_found_and_invalid(svc: Served) -> None:
    err = await rpc_error(svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id="nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(svc.stub.GetAlert(alert_pb2.GetAlertRequest()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_alerts_filters_and_pages_newest_first(svc: Served) -> None:
    ids = []
    for n in range(7):
        camera = "cam-odd" if n % 2 else "cam-even"
        ids.append((await svc.publish(n, camera_id=camera)).alert_id)
    await svc.stub.Adjudicate(
        alert_pb2.AdjudicateRequest(
            alert_id=ids[3], officer_id="o", decision=alert_pb2.DECISION_REJECT
        )
    )
    seen: list[str] = []
    token = ""
    while True:
        page = await svc.stub.ListAlerts(
            alert_pb2.ListAlertsRequest(
                filter=alert_pb2.AlertFilter(camera_ids=["cam-odd"]), page_size=2, page_token=token
            ),
            timeout=5,
        )
        assert len(page.alerts) <= 2
        seen += [a.alert_id for a in page.alerts]
        token = page.next_page_token
        if not token:
            break
    assert seen == [ids[5], ids[3], ids[1]]
    rejected = await svc.stub.ListAlerts(
        alert_pb2.ListAlertsRequest(state=alert_pb2.ALERT_STATE_REJECTED)
    )
    assert [a.alert_id for a in rejected.alerts] == [ids[3]]
    err = await rpc_error(svc.stub.ListAlerts(alert_pb2.ListAlertsRequest(page_token="bad")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_legal_hold_is_set_audited_and_needs_a_reason(svc: Served) -> None:
    alert_id = (await svc.publish(1)).alert_id
    held = await svc.stub.SetLegalHold(
        alert_pb2.SetLegalHoldRequest(
            alert_id=alert_id, legal_hold=True, officer_id="dc-7", reason="case 2024/17"
        )
    )
    assert held.legal_hold
    audit = await svc.stub.GetAuditLog(alert_pb2.GetAuditLogRequest(action_prefix="alert.legal"))
    assert [dict(r.details)["legal_hold"] for r in audit.records] == ["true"]
    err = await rpc_error(
        svc.stub.SetLegalHold(
            alert_pb2.SetLegalHoldRequest(alert_id=alert_id, legal_hold=False, officer_id="dc-7")
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(
        svc.stub.SetLegalHold(
            alert_pb2.SetLegalHoldRequest(
                alert_id="missing", legal_hold=True, officer_id="o", reason="r"
            )
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_retention_deletes_expired_alerts_but_not_held_ones(serve: Factory) -> None:
    svc = await serve(retention_s=0.5, retention_sweep_interval_s=0.1)
    expiring = (await svc.publish(1)).alert_id
    held = (await svc.publish(2)).alert_id
    await svc.stub.SetLegalHold(
        alert_pb2.SetLegalHoldRequest(alert_id=held, legal_hold=True, officer_id="o", reason="r")
    )
    await asyncio.sleep(1.0)
    err = await rpc_error(svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=expiring)))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    kept = await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=held))
    assert kept.legal_hold and kept.event.crop_jpeg == CROP
    deleted = await svc.stub.GetAuditLog(alert_pb2.GetAuditLogRequest(action_prefix="alert.del"))
    assert [dict(r.details)["alert_id"] for r in deleted.records] == [expiring]


# --- the audit log --------------------------------------------------------------------------


async def test_append_audit_chains_records_and_serves_the_audit_sink(svc: Served) -> None:
    sink = GrpcAuditSink(svc.channel)
    await sink.record("deployment.started", "lfr-watchlist", {"deployment_id": "dep-1"})
    record = await svc.stub.AppendAudit(
        alert_pb2.AppendAuditRequest(
            actor="lfr-match", action="faces.seen", details={"count": "12"}
        )
    )
    assert record.seq == 2 and record.hash and record.record_id
    log = await svc.stub.GetAuditLog(alert_pb2.GetAuditLogRequest())
    assert [r.seq for r in log.records] == [1, 2]
    assert log.records[1].prev_hash == log.records[0].hash
    with pytest.raises(InvalidArgument) as info:
        await sink.record("Not An Action", "x", {})
    assert "action" in str(info.value)


async def test_append_audit_is_idempotent_per_actor_and_event_id(svc: Served) -> None:
    request = alert_pb2.AppendAuditRequest(
        actor="lfr-watchlist", action="entry.enrolled", details={"event_id": "watchlist:17"}
    )
    first = await svc.stub.AppendAudit(request)
    again = await svc.stub.AppendAudit(request)  # a retry after a lost reply
    assert again == first
    other_actor = alert_pb2.AppendAuditRequest(
        actor="lfr-match", action="faces.seen", details={"event_id": "watchlist:17"}
    )
    assert (await svc.stub.AppendAudit(other_actor)).seq == first.seq + 1
    assert len(svc.store.audit_records) == 2


@pytest.mark.parametrize(
    "request_",
    [
        alert_pb2.AppendAuditRequest(actor="", action="a.b"),
        alert_pb2.AppendAuditRequest(actor="x", action="nodot"),
        alert_pb2.AppendAuditRequest(actor="x", action="a.b", details={"k": "v" * 5000}),
    ],
)
async def test_append_audit_refuses_bad_records(
    svc: Served, request_: alert_pb2.AppendAuditRequest
) -> None:
    err = await rpc_error(svc.stub.AppendAudit(request_, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_audit_log_filters_by_action_and_time_and_pages(svc: Served) -> None:
    for n in range(5):
        await svc.stub.AppendAudit(
            alert_pb2.AppendAuditRequest(actor="t", action="deployment.started", details={})
        )
        await svc.stub.AppendAudit(
            alert_pb2.AppendAuditRequest(actor="t", action="faces.seen", details={"n": str(n)})
        )
    pages: list[list[int]] = []
    token = ""
    while True:
        page = await svc.stub.GetAuditLog(
            alert_pb2.GetAuditLogRequest(action_prefix="faces.", page_size=2, page_token=token)
        )
        pages.append([r.seq for r in page.records])
        token = page.next_page_token
        if not token:
            break
    assert [seq for page in pages for seq in page] == [2, 4, 6, 8, 10]
    assert all(len(p) <= 2 for p in pages)
    records = svc.store.audit_records
    cut = records[5].time
    since = await svc.stub.GetAuditLog(alert_pb2.GetAuditLogRequest(since=cut))
    assert since.records[0].time.ToMilliseconds() >= cut.ToMilliseconds()
    until = await svc.stub.GetAuditLog(alert_pb2.GetAuditLogRequest(until=cut))
    assert all(r.time.ToMilliseconds() <= cut.ToMilliseconds() for r in until.records)
    assert len(since.records) + len(until.records) >= 10
    err = await rpc_error(
        svc.stub.GetAuditLog(
            alert_pb2.GetAuditLogRequest(since=to_timestamp(2000), until=to_timestamp(1000))
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_verify_audit_log_names_the_altered_record(svc: Served) -> None:
    for n in range(4):
        await svc.stub.AppendAudit(
            alert_pb2.AppendAuditRequest(actor="t", action="faces.seen", details={"n": str(n)})
        )
    ok = await svc.stub.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest())
    assert ok.ok and ok.records_checked == 4 and ok.first_broken_seq == 0
    svc.store.audit_records[2].details["n"] = "999"
    broken = await svc.stub.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest())
    assert not broken.ok
    assert broken.first_broken_seq == 3
    assert broken.first_broken_record_id == svc.store.audit_records[2].record_id
    assert broken.records_checked == 2
    assert "altered" in broken.problem


async def test_subscribers_joining_mid_flow_get_every_alert_once_in_order(svc: Served) -> None:
    """History-to-live hand-over under load: whenever a subscriber joins, replay plus live
    adds up to the whole stream, without a gap or a repeat."""
    total = 120
    ids: list[str] = []

    async def publisher() -> None:
        for n in range(total):
            ids.append((await svc.publish(n)).alert_id)
            if n % 10 == 0:
                await asyncio.sleep(0.01)

    async def subscriber(delay: float) -> list[str]:
        await asyncio.sleep(delay)
        call = svc.stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id="j", resume_cursor="0"))
        got = [a.alert_id for a in await take(call, total)]
        call.cancel()
        return got

    results = await asyncio.gather(
        publisher(), *(subscriber(delay) for delay in (0, 0.02, 0.05, 0.08, 0.12))
    )
    for got in results[1:]:
        assert got == ids


async def test_crops_never_reach_the_log(
    serve: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    """DESIGN §1: crops live only inside the alert record, never in log output (also when a
    request is refused)."""
    svc = await serve(max_crop_bytes=64)
    marker = b"CROP-MARKER-7f3a"
    published = await svc.publish(1, crop_jpeg=b"\xff\xd8" + marker)
    await rpc_error(svc.publish(2, crop_jpeg=b"\xff\xd8" + marker * 10))  # too large
    call = svc.stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id="s", resume_cursor="0"))
    assert (await next_alert(call)).event.crop_jpeg.endswith(marker)
    call.cancel()
    await svc.stub.GetAlert(alert_pb2.GetAlertRequest(alert_id=published.alert_id))
    await svc.stub.ListAlerts(alert_pb2.ListAlertsRequest())
    out = capsys.readouterr()
    assert "Publish" in out.out + out.err  # the per-RPC lines were captured
    assert marker.decode() not in out.out + out.err
