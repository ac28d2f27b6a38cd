"""MatchService over real in-process gRPC (port 0): health, reflection, every RPC's answers and
errors, with fakes behind the adapter Protocols; and the two gRPC adapters (watchlist resolver,
alert publisher) against real in-process doubles of those services."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lfr.common.errors import InvalidArgument, Unavailable
from lfr.common.server import RunningServer
from lfr.v1 import alert_pb2, match_pb2, match_pb2_grpc
from lfr_match import probe
from lfr_match.peers import GrpcAlertPublisher, GrpcCameraResolver, peer_channel, peer_serving
from lfr_match.ports import ActiveDeployment, Neighbour
from lfr_match.server import MatchDeps, build_server
from lfr_match.settings import MatchSettings
from tests.integration.match_support import (
    Deployment,
    DoubleServer,
    alert_double,
    watchlist_double,
)
from tests.unit.test_match_servicer import FakeIndex, FakePublisher, FakeResolver, unit

DEP = ActiveDeployment("dep-1", "wl-1", "lfr:idx:wl:wl-1", 0.92, "high-street")


class SwitchableIndex(FakeIndex):
    up = True
    private = True

    async def ready(self) -> bool:
        return self.up

    async def privacy_ok(self) -> bool:
        return self.private


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunningServer, MatchDeps]]:
    deps = MatchDeps(
        index=SwitchableIndex(),
        resolver=FakeResolver({"cam-1": DEP}),
        publisher=FakePublisher(),
    )
    settings = MatchSettings(port=0, health_interval_s=0.2, min_threshold=0.5)
    server = await build_server(settings, deps)
    await server.start()
    await server.check_dependencies()
    yield server, deps
    await server.stop(0)


async def _health(address: str) -> int:
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return int(reply.status)


async def test_health_follows_redis_and_the_privacy_guard(
    served: tuple[RunningServer, MatchDeps],
) -> None:
    server, deps = served
    index = deps.index
    assert isinstance(index, SwitchableIndex)
    assert await _health(server.address) == health_pb2.HealthCheckResponse.SERVING
    index.private = False
    assert not await server.check_dependencies()
    assert await _health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    index.private = True
    index.up = False
    await server.check_dependencies()
    assert await _health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    index.up = True
    await server.check_dependencies()
    assert await _health(server.address) == health_pb2.HealthCheckResponse.SERVING


async def test_not_serving_before_dependencies_answer() -> None:
    index = SwitchableIndex()
    index.up = False
    deps = MatchDeps(index=index, resolver=FakeResolver(), publisher=FakePublisher())
    server = await build_server(MatchSettings(port=0, health_interval_s=0.1), deps)
    await server.start()
    try:
        await asyncio.sleep(0.3)
        assert await _health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        index.up = True
        await asyncio.sleep(0.3)
        assert await _health(server.address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop(0)


async def test_reflection_lists_match_service(served: tuple[RunningServer, MatchDeps]) -> None:
    server, _ = served
    async with aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names: set[str] = set()
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            names |= {s.name for s in reply.list_services_response.service}
    assert {"lfr.v1.MatchService", "grpc.health.v1.Health"} <= names


def _req(request_id: str = "r1", camera_id: str = "cam-1", **kw: object) -> match_pb2.MatchRequest:
    return match_pb2.MatchRequest(
        request_id=request_id,
        camera_id=camera_id,
        embedding=unit(3),
        **kw,  # type: ignore[arg-type]
    )


def _reason(err: grpc.RpcError) -> str:
    metadata: Any = err.trailing_metadata() or ()
    return next((str(v) for k, v in metadata if k == "lfr-reason"), "")


async def test_match_rpc_answers_and_errors(served: tuple[RunningServer, MatchDeps]) -> None:
    server, deps = served
    index = deps.index
    assert isinstance(index, FakeIndex)
    index.neighbours = [Neighbour("e-1", 0.96, 1, "ref")]
    async with aio.insecure_channel(server.address) as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        reply = await stub.Match(_req(crop_jpeg=b"jpeg"), timeout=5)
        assert reply.outcome == match_pb2.MATCH_OUTCOME_MATCHED
        assert reply.event_id == probe.event_id("dep-1", "r1")
        assert reply.match.entry_id == "e-1"

        index.neighbours = [Neighbour("e-1", 0.5, 1, "ref")]
        reply = await stub.Match(_req("r2"), timeout=5)
        assert reply.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH
        assert reply.top_score == pytest.approx(0.5)

        with pytest.raises(grpc.RpcError) as info:
            await stub.Match(_req("r3", camera_id="cam-x"), timeout=5)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert _reason(info.value) == "NO_DEPLOYMENT"

        with pytest.raises(grpc.RpcError) as info:
            await stub.Match(match_pb2.MatchRequest(request_id="r4", camera_id="c"), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "embedding has 0 values" in (info.value.details() or "")

        publisher = deps.publisher
        assert isinstance(publisher, FakePublisher)
        publisher.error = Unavailable("alert down", reason="ALERT_UNAVAILABLE")
        index.neighbours = [Neighbour("e-1", 0.99, 1, "ref")]
        with pytest.raises(grpc.RpcError) as info:
            await stub.Match(_req("r5"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert _reason(info.value) == "ALERT_UNAVAILABLE"

        stats = await stub.GetStats(match_pb2.GetMatchStatsRequest(), timeout=5)
        assert (stats.probes, stats.matches, stats.non_matches) == (5, 1, 1)
        assert (stats.refused_no_deployment, stats.refused_invalid) == (1, 1)
        assert stats.publish_failures == 1
        assert stats.knn_latency.count == 3


async def test_match_stream_keeps_going_after_item_errors(
    served: tuple[RunningServer, MatchDeps],
) -> None:
    server, deps = served
    index = deps.index
    assert isinstance(index, FakeIndex)
    index.neighbours = [Neighbour("e-1", 0.2, 1, "ref")]
    requests = [_req(str(i), camera_id="cam-1" if i % 3 else "cam-x") for i in range(30)]
    async with aio.insecure_channel(server.address) as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        replies = [r async for r in stub.MatchStream(iter(requests), timeout=10)]
    assert [r.request_id for r in replies] == [str(i) for i in range(30)]
    refused = [r for r in replies if r.outcome == match_pb2.MATCH_OUTCOME_REFUSED]
    assert len(refused) == 10
    assert all(r.error.reason == "NO_DEPLOYMENT" for r in refused)
    assert sum(r.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH for r in replies) == 20


# -- the gRPC adapters against real doubles --------------------------------------------------


@pytest.fixture
async def doubles() -> AsyncIterator[DoubleServer]:
    watchlist = watchlist_double()
    watchlist.deployments.append(Deployment("dep-1", "wl-1", ["cam-1"], threshold=0.75))
    server = DoubleServer(watchlist=watchlist, alert=alert_double())
    await server.start()
    yield server
    await server.stop()


def _event(event_id: str = "ev-1") -> alert_pb2.MatchEvent:
    return alert_pb2.MatchEvent(event_id=event_id, deployment_id="dep-1", entry_id="e")


async def test_resolver_over_grpc(doubles: DoubleServer) -> None:
    resolver = GrpcCameraResolver(peer_channel(doubles.address), cache_ttl_s=0)
    dep = await resolver.resolve("cam-1")
    assert dep is not None and dep.deployment_id == "dep-1" and dep.threshold == pytest.approx(0.75)
    assert dep.index_name == "lfr:idx:wl:wl-1"
    assert await resolver.resolve("cam-2") is None
    await doubles.stop()
    with pytest.raises(Unavailable) as info:
        await resolver.resolve("cam-1")
    assert info.value.reason == "WATCHLIST_UNAVAILABLE"
    await resolver.close()


async def test_publisher_retries_with_backoff_until_taken(doubles: DoubleServer) -> None:
    alert = doubles.alert
    assert alert is not None
    retries: list[int] = []
    publisher = GrpcAlertPublisher(
        peer_channel(doubles.address), on_retry=lambda: retries.append(1)
    )
    alert.fail_next = 2
    published = await publisher.publish(_event(), deadline_s=5)
    assert published.alert_id == "alert-ev-1" and not published.replayed
    assert alert.calls == 3 and len(retries) == 2
    again = await publisher.publish(_event(), deadline_s=5)
    assert again.replayed and len(alert.events) == 1
    await publisher.close()


async def test_publisher_does_not_retry_a_rejection(doubles: DoubleServer) -> None:
    alert = doubles.alert
    assert alert is not None
    alert.fail_next, alert.fail_code = 1, grpc.StatusCode.INVALID_ARGUMENT
    publisher = GrpcAlertPublisher(peer_channel(doubles.address))
    with pytest.raises(InvalidArgument) as info:
        await publisher.publish(_event(), deadline_s=5)
    assert info.value.reason == "ALERT_REJECTED" and alert.calls == 1
    await publisher.close()


async def test_publisher_gives_up_at_its_deadline_then_recovers(doubles: DoubleServer) -> None:
    alert = doubles.alert
    assert alert is not None
    publisher = GrpcAlertPublisher(peer_channel(doubles.address, reconnect_max_s=0.5))
    channel = peer_channel(doubles.address)
    assert await peer_serving(channel)
    await doubles.stop()
    assert not await peer_serving(channel)
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await publisher.publish(_event(), deadline_s=0.6)
    assert 0.4 < time.monotonic() - started < 2.0
    assert info.value.reason == "ALERT_UNAVAILABLE" and "same request_id" in info.value.message
    await doubles.start()  # same port
    published = await publisher.publish(_event(), deadline_s=3)
    assert published.alert_id == "alert-ev-1" and len(alert.events) == 1
    await publisher.close()
    await channel.close(None)
