"""Crashes: the alert service (a real process) or Redis killed with SIGKILL while alerts are
being published and streamed. No alert whose Publish returned OK may be lost, and a subscriber
that reconnects with its cursor gets every alert exactly once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from grpc import aio

from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2
from lfr_cli.testing import RedisInstance, ServiceInstance
from tests.conftest import ServiceStarter

pytestmark = pytest.mark.integration

TOTAL = 60
KILL_AFTER = 25


def event(n: int) -> alert_pb2.MatchEvent:
    return alert_pb2.MatchEvent(
        event_id=f"crash-{n}",
        deployment_id="dep-1",
        camera_id=f"cam-{n % 3}",
        entry_id=f"entry-{n}",
        watchlist_id="wl-1",
        category=common_pb2.CATEGORY_WANTED_BY_COURTS,
        score=0.9,
        threshold=0.6,
        crop_jpeg=b"\xff\xd8crop-%d" % n,
    )


def channel(addr: str) -> aio.Channel:
    # Reconnect quickly once the service is back (gRPC's default backoff grows to minutes).
    return aio.insecure_channel(
        addr,
        options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),
        ],
    )


class Scenario:
    """A publisher that retries each event until Publish answers OK, and a subscriber that
    reconnects from its last cursor whenever its stream breaks."""

    def __init__(self, addr: str) -> None:
        self.addr = addr
        self.acked: dict[int, str] = {}
        self.received: list[alert_pb2.Alert] = []
        self.reconnects = 0
        self.publish_errors = 0
        self.crashing: asyncio.Task[Any] | None = None

    async def publish(self, crash_at: int, crash: Callable[[], Any]) -> None:
        async with channel(self.addr) as ch:
            stub = alert_pb2_grpc.AlertServiceStub(ch)
            for n in range(TOTAL):
                if n == crash_at:  # crash while publishing goes on
                    self.crashing = asyncio.create_task(crash())
                while True:
                    try:
                        reply = await stub.Publish(event(n), timeout=3)
                    except grpc.aio.AioRpcError:
                        self.publish_errors += 1
                        await asyncio.sleep(0.1)
                        continue
                    self.acked[n] = reply.alert_id
                    break
                await asyncio.sleep(0.005)

    async def subscribe(self) -> None:
        cursor = "0"
        while True:
            try:
                async with channel(self.addr) as ch:
                    stub = alert_pb2_grpc.AlertServiceStub(ch)
                    request = alert_pb2.SubscribeRequest(
                        subscriber_id="crash", resume_cursor=cursor
                    )
                    async for alert in stub.Subscribe(request):
                        self.received.append(alert)
                        cursor = alert.cursor
            except grpc.aio.AioRpcError:
                self.reconnects += 1
                await asyncio.sleep(0.1)

    async def run(self, crash: Callable[[], Any]) -> None:
        follower = asyncio.create_task(self.subscribe())
        try:
            await asyncio.wait_for(self.publish(KILL_AFTER, crash), 120)
            assert self.crashing is not None
            await self.crashing
            for _ in range(300):  # the subscriber catches up
                if {a.alert_id for a in self.received} >= set(self.acked.values()):
                    break
                await asyncio.sleep(0.1)
        finally:
            follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)

    async def check(self) -> None:
        assert len(self.acked) == TOTAL
        assert len(set(self.acked.values())) == TOTAL  # a retried Publish was a replay, not new
        got = [a.alert_id for a in self.received]
        assert len(got) == len(set(got)), "an alert was delivered twice"
        assert set(got) == set(self.acked.values()), "an acknowledged alert was lost"
        # In publication order, which is stream (cursor) order.
        assert got == [self.acked[n] for n in range(TOTAL)]
        async with channel(self.addr) as ch:
            stub = alert_pb2_grpc.AlertServiceStub(ch)
            for alert_id in self.acked.values():
                stored = await stub.GetAlert(
                    alert_pb2.GetAlertRequest(alert_id=alert_id), timeout=5
                )
                assert stored.event.crop_jpeg.startswith(b"\xff\xd8crop-")
            verdict = await stub.VerifyAuditLog(alert_pb2.VerifyAuditLogRequest(), timeout=30)
            assert verdict.ok, verdict.problem
            assert verdict.records_checked == TOTAL  # one alert.raised each, none half-written


async def test_no_acknowledged_alert_is_lost_when_the_service_is_killed(
    redis_client: redis.Redis, redis_server: RedisInstance, start_service: ServiceStarter
) -> None:
    service: ServiceInstance = start_service(
        "alert", {"REDIS_URL": redis_server.url, "COOLDOWN_S": "0"}
    )
    scenario = Scenario(service.addr)

    async def crash() -> None:
        service.kill9()
        await asyncio.sleep(0.3)  # publishes and the stream fail meanwhile
        await asyncio.to_thread(service.restart)

    await scenario.run(crash)
    await scenario.check()
    assert scenario.publish_errors >= 1
    assert scenario.reconnects >= 1  # the stream really broke


async def test_no_acknowledged_alert_is_lost_when_redis_is_killed(
    tmp_path: Path, start_service: ServiceStarter
) -> None:
    with RedisInstance(tmp_path / "redis") as private:  # appendfsync always
        service = start_service("alert", {"REDIS_URL": private.url, "COOLDOWN_S": "0"})
        scenario = Scenario(service.addr)

        async def crash() -> None:
            private.kill9()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(private.restart)

        await scenario.run(crash)
        await scenario.check()
        assert scenario.publish_errors >= 1
