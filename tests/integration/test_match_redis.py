"""The match service in-process against the REAL Redis (index written per the index contract),
a real gRPC watchlist double and a real gRPC alert double: decisions, refusals, the alert
outage, and the Redis privacy guard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pytest
import redis
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lfr.common.server import RunningServer
from lfr.v1 import common_pb2, match_pb2, match_pb2_grpc
from lfr_cli.process import free_port
from lfr_cli.testing import RedisInstance
from lfr_match import probe
from lfr_match.redis_index import RedisVectorIndex
from lfr_match.server import build_server
from lfr_match.settings import MatchSettings
from tests.integration.match_support import (
    AlertDouble,
    Deployment,
    DoubleServer,
    Vectors,
    WatchlistDouble,
    add_entry,
    alert_double,
    create_index,
    near,
    unit_vectors,
    watchlist_double,
)

pytestmark = pytest.mark.integration

WL = "wl-main"
SUBJECTS = 20


@dataclass
class Suite:
    server: RunningServer
    stub: match_pb2_grpc.MatchServiceAsyncStub
    watchlist: WatchlistDouble
    alert: AlertDouble
    alert_server: DoubleServer
    enrolled: Vectors  # (SUBJECTS, 2, 128)


def _settings(
    redis_url: str, watchlist: str, alert: str | None = None, **extra: object
) -> MatchSettings:
    return MatchSettings(
        port=0,
        redis_url=redis_url,
        watchlist_addr=watchlist,
        alert_addr=alert or watchlist,
        health_interval_s=0.2,
        resolve_cache_ttl_s=0,
        publish_deadline_s=1.0,
        min_threshold=0.5,  # synthetic vectors: not the calibrated floor
        publish_attempt_timeout_s=0.5,
        peer_reconnect_max_s=0.5,
        **extra,  # type: ignore[arg-type]
    )


async def _serving(address: str, want: int, timeout_s: float = 10.0) -> None:
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            status = reply.status
            if status == want:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"health stayed {status}, wanted {want}")


@pytest.fixture
async def suite(redis_client: redis.Redis, redis_server: RedisInstance) -> AsyncIterator[Suite]:
    create_index(redis_client, WL)
    base = unit_vectors(SUBJECTS, seed=11)
    enrolled = np.stack([np.stack([near(v, 0.97, seed=i), v]) for i, v in enumerate(base)])
    for i in range(SUBJECTS):
        add_entry(redis_client, WL, f"subject-{i}", enrolled[i], category=(i % 5) + 1)
    watchlist, alert = watchlist_double(), alert_double()
    watchlist.deployments.append(Deployment("dep-main", WL, ["cam-1", "cam-2"], threshold=0.92))
    watchlist_server = DoubleServer(watchlist=watchlist)
    alert_server = DoubleServer(alert=alert, port=free_port())
    await watchlist_server.start()
    await alert_server.start()
    server = await build_server(
        _settings(redis_server.url, watchlist_server.address, alert_server.address)
    )
    await server.start()
    await _serving(server.address, health_pb2.HealthCheckResponse.SERVING)
    channel = aio.insecure_channel(server.address)
    stub = match_pb2_grpc.MatchServiceStub(channel)
    yield Suite(server, stub, watchlist, alert, alert_server, enrolled)
    await channel.close(None)
    await server.stop(0)
    await alert_server.stop()
    await watchlist_server.stop()


def _req(vector: Vectors, request_id: str, camera_id: str = "cam-1") -> match_pb2.MatchRequest:
    return match_pb2.MatchRequest(
        request_id=request_id,
        camera_id=camera_id,
        embedding=[float(x) for x in vector],
        crop_jpeg=b"\xff\xd8crop",
        model_version="test-model",
    )


async def test_enrolled_subject_matches_with_the_right_entry_and_score(suite: Suite) -> None:
    probe_vector = near(suite.enrolled[7, 1], 0.96, seed=99)
    expected = float(np.max(suite.enrolled[7] @ probe_vector))
    reply = await suite.stub.Match(_req(probe_vector, "req-7"), timeout=10)
    assert reply.outcome == match_pb2.MATCH_OUTCOME_MATCHED
    assert reply.match.entry_id == "subject-7"
    assert reply.match.watchlist_id == WL and reply.match.rank == 1
    assert reply.match.score == pytest.approx(expected, abs=1e-5)
    assert reply.deployment_id == "dep-main"
    assert reply.event_id == probe.event_id("dep-main", "req-7")
    event = suite.alert.events[reply.event_id]
    assert event.entry_id == "subject-7" and event.subject_ref == "ref-subject-7"
    assert event.category == common_pb2.CATEGORY_BAIL_OR_COURT_ORDER  # (7 % 5) + 1
    assert event.crop_jpeg == b"\xff\xd8crop" and event.threshold == pytest.approx(0.92)
    assert reply.alert_id == f"alert-{reply.event_id}"


async def test_stranger_does_not_match(suite: Suite) -> None:
    stranger = unit_vectors(1, seed=12345)[0]
    best = float(np.max(suite.enrolled.reshape(-1, 128) @ stranger))
    reply = await suite.stub.Match(_req(stranger, "req-stranger"), timeout=10)
    assert reply.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH
    assert reply.top_score == pytest.approx(best, abs=1e-5)
    assert reply.event_id == "" and suite.alert.calls == 0


async def test_camera_without_active_deployment_is_refused_and_counted(suite: Suite) -> None:
    with pytest.raises(grpc.RpcError) as info:
        await suite.stub.Match(_req(suite.enrolled[0, 0], "req-x", camera_id="cam-9"), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cam-9" in (info.value.details() or "")
    stats = await suite.stub.GetStats(match_pb2.GetMatchStatsRequest(), timeout=5)
    assert stats.refused_no_deployment == 1 and stats.matches == 0
    assert suite.alert.calls == 0


async def test_only_the_deployments_watch_list_can_match(
    suite: Suite, redis_client: redis.Redis
) -> None:
    other = unit_vectors(1, seed=777)[0]
    create_index(redis_client, "wl-other")
    add_entry(redis_client, "wl-other", "elsewhere", other)
    reply = await suite.stub.Match(_req(other, "req-other"), timeout=10)
    assert reply.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH


async def test_expired_entry_never_matches(suite: Suite, redis_client: redis.Redis) -> None:
    gone = unit_vectors(1, seed=4242)[0]
    add_entry(redis_client, WL, "expired", gone, expires_at=time.time() - 1)
    reply = await suite.stub.Match(_req(gone, "req-expired"), timeout=10)
    assert reply.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH
    add_entry(redis_client, WL, "fresh", gone)
    reply = await suite.stub.Match(_req(gone, "req-fresh"), timeout=10)
    assert reply.match.entry_id == "fresh" and reply.match.score == pytest.approx(1.0, abs=1e-5)


async def test_stream_mixes_matches_non_matches_and_refusals(suite: Suite) -> None:
    requests = [
        _req(near(suite.enrolled[3, 0], 0.95, seed=1), "s-match"),
        _req(unit_vectors(1, seed=5)[0], "s-stranger"),
        _req(suite.enrolled[0, 0], "s-refused", camera_id="cam-none"),
        _req(near(suite.enrolled[4, 0], 0.95, seed=2), "s-match-2", camera_id="cam-2"),
    ]
    replies = [r async for r in suite.stub.MatchStream(iter(requests), timeout=10)]
    assert [r.outcome for r in replies] == [
        match_pb2.MATCH_OUTCOME_MATCHED,
        match_pb2.MATCH_OUTCOME_NO_MATCH,
        match_pb2.MATCH_OUTCOME_REFUSED,
        match_pb2.MATCH_OUTCOME_MATCHED,
    ]
    assert replies[2].error.reason == "NO_DEPLOYMENT"
    assert [replies[0].match.entry_id, replies[3].match.entry_id] == ["subject-3", "subject-4"]


async def test_alert_down_is_unavailable_then_the_retry_publishes_exactly_once(
    suite: Suite,
) -> None:
    probe_vector = near(suite.enrolled[5, 0], 0.95, seed=3)
    await suite.alert_server.stop()
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        await suite.stub.Match(_req(probe_vector, "req-outage"), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 5
    assert suite.alert.events == {}

    await suite.alert_server.start()  # same port: the alert service is back
    first = await suite.stub.Match(_req(probe_vector, "req-outage"), timeout=10)
    again = await suite.stub.Match(_req(probe_vector, "req-outage"), timeout=10)
    assert first.outcome == again.outcome == match_pb2.MATCH_OUTCOME_MATCHED
    assert first.event_id == again.event_id == probe.event_id("dep-main", "req-outage")
    assert list(suite.alert.events) == [first.event_id]  # exactly one event
    stats = await suite.stub.GetStats(match_pb2.GetMatchStatsRequest(), timeout=5)
    assert stats.publish_failures == 1 and stats.matches == 2


async def test_hnsw_index_matches_too(
    redis_client: redis.Redis, redis_server: RedisInstance
) -> None:
    create_index(redis_client, "wl-hnsw", algorithm="HNSW")
    vectors = unit_vectors(200, seed=21)
    for i, v in enumerate(vectors):
        add_entry(redis_client, "wl-hnsw", f"h-{i}", v)
    watchlist, alert = watchlist_double(), alert_double()
    watchlist.deployments.append(Deployment("dep-h", "wl-hnsw", ["cam-h"], threshold=0.92))
    peers = DoubleServer(watchlist=watchlist, alert=alert)
    await peers.start()
    server = await build_server(_settings(redis_server.url, peers.address))
    await server.start()
    try:
        await _serving(server.address, health_pb2.HealthCheckResponse.SERVING)
        async with aio.insecure_channel(server.address) as channel:
            stub = match_pb2_grpc.MatchServiceStub(channel)
            reply = await stub.Match(_req(near(vectors[42], 0.96, 8), "h", "cam-h"), timeout=10)
        assert reply.match.entry_id == "h-42"
    finally:
        await server.stop(0)
        await peers.stop()


async def test_missing_or_foreign_index_is_refused(suite: Suite, redis_client: redis.Redis) -> None:
    suite.watchlist.deployments[0].watchlist_id = "wl-never-created"
    with pytest.raises(grpc.RpcError) as info:
        await suite.stub.Match(_req(suite.enrolled[0, 0], "r-none"), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "wl-never-created" in (info.value.details() or "")

    # An index whose distances are not cosine would make every score wrong.
    create_index(redis_client, "wl-l2", metric="L2")
    suite.watchlist.deployments[0].watchlist_id = "wl-l2"
    with pytest.raises(grpc.RpcError) as info:
        await suite.stub.Match(_req(suite.enrolled[0, 0], "r-l2"), timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "COSINE" in (info.value.details() or "")


# -- the Redis privacy guard ----------------------------------------------------------------


async def test_guard_scrubs_vector_queries_left_in_slowlog(
    redis_client: redis.Redis, redis_server: RedisInstance
) -> None:
    name = create_index(redis_client, WL)
    vector = unit_vectors(1, seed=31)[0]
    add_entry(redis_client, WL, "e", vector)
    original = str(redis_client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"])
    try:
        # A KNN query that reached SLOWLOG while it was on (an earlier run, another client).
        redis_client.config_set("slowlog-log-slower-than", 0)
        cast(Any, redis_client).execute_command(
            "FT.SEARCH", name, "*=>[KNN 1 @embedding $vec]", "PARAMS", "2", "vec",
            vector.tobytes(), "DIALECT", "2",
        )  # fmt: skip
        redis_client.set("unrelated", "1")
        assert any(b"KNN" in e["command"] for e in redis_client.slowlog_get(1000))

        index = RedisVectorIndex(redis_server.url)
        try:
            assert await index.privacy_ok()
        finally:
            await index.close()
        assert not any(b"KNN" in e["command"] for e in redis_client.slowlog_get(1000))
        slowlog = redis_client.config_get("slowlog-log-slower-than")
        assert slowlog["slowlog-log-slower-than"] == "-1"
    finally:
        redis_client.config_set("slowlog-log-slower-than", original)


# The rest runs on a private Redis so the shared one keeps its settings.


async def test_privacy_guard_refuses_then_enforces_and_survives_a_redis_restart(
    tmp_path: Path,
) -> None:
    with RedisInstance(tmp_path / "redis", slowlog_log_slower_than=0) as private:
        client = private.client()
        create_index(client, WL)
        vectors = unit_vectors(3, seed=1)
        for i, v in enumerate(vectors):
            add_entry(client, WL, f"e{i}", v)
        watchlist, alert = watchlist_double(), alert_double()
        watchlist.deployments.append(Deployment("dep", WL, ["cam"], threshold=0.92))
        peers = DoubleServer(watchlist=watchlist, alert=alert)
        await peers.start()

        # Check-only: Redis logs every command to SLOWLOG, so the service must not serve.
        server = await build_server(
            _settings(private.url, peers.address, redis_enforce_privacy_config=False)
        )
        await server.start()
        try:
            await asyncio.sleep(0.5)
            assert not await server.check_dependencies()
            assert server.dependency_status == {"redis": True, "redis-privacy-guard": False}
            async with aio.insecure_channel(server.address) as channel:
                stub = match_pb2_grpc.MatchServiceStub(channel)
                with pytest.raises(grpc.RpcError) as info:
                    await stub.Match(_req(vectors[0], "r1", "cam"), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "privacy" in (info.value.details() or "").lower()
        finally:
            await server.stop(0)
        assert client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"] == "0"

        # Enforcing (the default): it turns SLOWLOG off, then serves.
        server = await build_server(_settings(private.url, peers.address))
        await server.start()
        try:
            await _serving(server.address, health_pb2.HealthCheckResponse.SERVING)
            assert client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"] == "-1"
            assert client.config_get("hide-user-data-from-log")["hide-user-data-from-log"] == "yes"
            async with aio.insecure_channel(server.address) as channel:
                stub = match_pb2_grpc.MatchServiceStub(channel)
                reply = await stub.Match(_req(vectors[1], "r2", "cam"), timeout=5)
                assert reply.match.entry_id == "e1"

                # Redis restarts with its command-line settings (SLOWLOG on); the service's
                # next connection sets it off again before any query is sent.
                private.kill9()
                private.restart()
                assert (
                    private.client().config_get("slowlog-log-slower-than")[
                        "slowlog-log-slower-than"
                    ]
                    == "0"
                )
                for attempt in range(20):
                    try:
                        reply = await stub.Match(
                            _req(vectors[2], f"r3-{attempt}", "cam"), timeout=5
                        )
                        break
                    except grpc.RpcError as err:
                        assert err.code() == grpc.StatusCode.UNAVAILABLE
                        await asyncio.sleep(0.2)
                assert reply.match.entry_id == "e2"
                after = private.client()
                assert (
                    after.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"] == "-1"
                )
                leaked = [e for e in after.slowlog_get(1000) if b"KNN" in e["command"]]
                assert leaked == []

                # A MONITOR client would see every probe: not serving while one is attached.
                await _serving(server.address, health_pb2.HealthCheckResponse.SERVING)
                monitor: Any = private.client().monitor()  # type: ignore[no-untyped-call]
                monitor.connection.send_command("MONITOR")
                try:
                    await _serving(server.address, health_pb2.HealthCheckResponse.NOT_SERVING)
                    with pytest.raises(grpc.RpcError) as info:
                        await stub.Match(_req(vectors[2], "r4", "cam"), timeout=5)
                    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                finally:
                    monitor.connection.disconnect()
                await _serving(server.address, health_pb2.HealthCheckResponse.SERVING)
        finally:
            await server.stop(0)
            await peers.stop()
