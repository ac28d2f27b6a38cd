"""Pieces of the match service that need no server: event ids, settings, metrics, the resolver
cache, ResolveCamera answers, Redis reply parsing and the slowlog scrub's matcher."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from grpc import aio

from lfr.common.errors import ConfigError, FailedPrecondition
from lfr.common.scores import THRESHOLD_FLOOR
from lfr.common.settings import load_settings
from lfr.common.timeutil import to_timestamp
from lfr.v1 import watchlist_pb2
from lfr_match import probe
from lfr_match.metrics import MatchMetrics
from lfr_match.peers import GrpcCameraResolver, deployment_from_reply
from lfr_match.ports import ActiveDeployment
from lfr_match.redis_index import _as_map, _config_ok, _is_vector_query, _parse_neighbours
from lfr_match.settings import MatchSettings


def test_event_id_is_deterministic_per_deployment_and_request() -> None:
    assert probe.event_id("d", "r") == probe.event_id("d", "r")
    assert probe.event_id("d", "r") != probe.event_id("d", "r2")
    assert probe.event_id("d", "r") != probe.event_id("d2", "r")
    # No ambiguity from concatenation.
    assert probe.event_id("ab", "c") != probe.event_id("a", "bc")


def test_the_threshold_floor_defaults_to_the_calibrated_one() -> None:
    assert MatchSettings().min_threshold == THRESHOLD_FLOOR


def test_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFR_MATCH_METRICS_PORT", "9464")
    monkeypatch.setenv("LFR_MATCH_RESOLVE_CACHE_TTL_S", "0.5")
    settings = load_settings(MatchSettings)
    assert settings.metrics_port == 9464 and settings.resolve_cache_ttl_s == 0.5
    monkeypatch.setenv("LFR_MATCH_DEFAULT_TOP_K", "500")
    with pytest.raises(ConfigError, match="default_top_k"):
        load_settings(MatchSettings)
    monkeypatch.delenv("LFR_MATCH_DEFAULT_TOP_K")
    monkeypatch.setenv("LFR_MATCH_NORM_TOLERANCE", "-1")
    with pytest.raises(ConfigError, match="LFR_MATCH_NORM_TOLERANCE"):
        load_settings(MatchSettings)
    monkeypatch.delenv("LFR_MATCH_NORM_TOLERANCE")
    monkeypatch.setenv("LFR_MATCH_REDIS_URL", "http://nope")
    with pytest.raises(ConfigError, match="redis_url"):
        load_settings(MatchSettings)


def test_metrics_rate_and_latency() -> None:
    now = [1000.0]
    metrics = MatchMetrics(clock=lambda: now[0])
    for _ in range(30):
        metrics.probe()
        now[0] += 1.0
    assert metrics.probes_per_second() == pytest.approx(30 / 30)
    now[0] += 120  # the minute window moved past every probe
    assert metrics.probes_per_second() == 0.0
    for ms in range(1, 101):
        metrics.knn(ms / 1000)
    summary = metrics.knn_summary()
    assert summary.count == 100
    assert summary.p50_ms == pytest.approx(50.5)
    assert summary.p99_ms == pytest.approx(99.01)
    assert summary.max_ms == pytest.approx(100)


def test_metrics_endpoint_serves_counters_without_face_labels() -> None:
    metrics = MatchMetrics()
    metrics.probe()
    metrics.refused("NO_DEPLOYMENT")
    metrics.failed("REDIS_UNAVAILABLE")
    port = metrics.serve(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    finally:
        metrics.stop_serving()
    assert "lfr_match_probes_total 1.0" in text
    assert 'lfr_match_refusals_total{reason="NO_DEPLOYMENT"} 1.0' in text
    assert 'lfr_match_failures_total{reason="REDIS_UNAVAILABLE"} 1.0' in text
    labels = {
        line.split("{", 1)[1].split("=", 1)[0]
        for line in text.splitlines()
        if "{" in line and line.startswith("lfr_match")
    }
    assert labels <= {"reason", "outcome", "peer", "le"}


def _reply(**deployment: Any) -> watchlist_pb2.ResolveCameraResponse:
    fields: dict[str, Any] = {
        "deployment_id": "d1",
        "watchlist_id": "w1",
        "camera_ids": ["cam"],
        "threshold": 0.8,
        "location": "loc",
        "state": watchlist_pb2.DEPLOYMENT_STATE_ACTIVE,
    }
    fields.update(deployment)
    return watchlist_pb2.ResolveCameraResponse(
        active=True, deployment=watchlist_pb2.Deployment(**fields), index_name="idx-1"
    )


def test_deployment_from_reply() -> None:
    assert deployment_from_reply("cam", watchlist_pb2.ResolveCameraResponse()) is None
    dep = deployment_from_reply("cam", _reply(end_time=to_timestamp(2000.0)))
    assert dep == ActiveDeployment("d1", "w1", "idx-1", pytest.approx(0.8), "loc", None, 2000.0)  # type: ignore[arg-type]
    ended = _reply(state=watchlist_pb2.DEPLOYMENT_STATE_ENDED)
    assert deployment_from_reply("cam", ended) is None
    with pytest.raises(FailedPrecondition, match="does not list camera"):
        deployment_from_reply("other-cam", _reply())
    no_index = _reply()
    no_index.index_name = ""
    assert deployment_from_reply("cam", no_index).index_name == "lfr:idx:wl:w1"  # type: ignore[union-attr]


def test_deployment_window() -> None:
    dep = ActiveDeployment("d", "w", "i", 0.8, "l", start_epoch=100.0, end_epoch=200.0)
    assert not dep.covers(99.9) and dep.covers(100.0) and dep.covers(199.9)
    assert not dep.covers(200.0)


class CountingResolver(GrpcCameraResolver):
    def __init__(self, answers: dict[str, ActiveDeployment], **kwargs: Any) -> None:
        self.now = [0.0]
        self.wall = [1000.0]
        super().__init__(
            aio.insecure_channel("127.0.0.1:9"),
            clock=lambda: self.now[0],
            wall_clock=lambda: self.wall[0],
            **kwargs,
        )
        self.answers = answers
        self.calls = 0

    async def _call(self, camera_id: str) -> ActiveDeployment | None:
        self.calls += 1
        await asyncio.sleep(0.01)
        return self.answers.get(camera_id)


async def test_resolver_caches_for_its_ttl_and_shares_misses() -> None:
    dep = ActiveDeployment("d", "w", "i", 0.8, "l", end_epoch=1010.0)
    resolver = CountingResolver({"cam": dep}, cache_ttl_s=1.0)
    results = await asyncio.gather(*(resolver.resolve("cam") for _ in range(10)))
    assert results == [dep] * 10 and resolver.calls == 1  # one call for ten concurrent misses
    resolver.now[0] = 0.5
    assert await resolver.resolve("cam") == dep and resolver.calls == 1
    assert await resolver.resolve("other") is None and resolver.calls == 2
    assert await resolver.resolve("other") is None and resolver.calls == 2  # "none" is cached
    resolver.now[0] = 1.5
    assert await resolver.resolve("cam") == dep and resolver.calls == 3
    resolver.wall[0] = 1010.0  # the deployment's window closed: cached or not, no match
    assert await resolver.resolve("cam") is None
    await resolver.close()


async def test_resolver_without_cache_asks_every_time() -> None:
    resolver = CountingResolver({}, cache_ttl_s=0)
    for _ in range(3):
        await resolver.resolve("cam")
    assert resolver.calls == 3
    await resolver.close()


def test_parse_resp3_and_resp2_replies() -> None:
    resp3 = {
        b"total_results": 2,
        b"results": [
            {b"id": b"k1", b"extra_attributes": {b"__lfr_dist": b"0.3", b"entry_id": b"e1",
                                                  b"category": b"2", b"subject_ref": b"s1"}},
            {b"id": b"k0", b"extra_attributes": {b"__lfr_dist": b"0.1", b"entry_id": b"e0",
                                                  b"category": b"1", b"subject_ref": b"s0"}},
        ],
        b"warning": [],
    }  # fmt: skip
    got = _parse_neighbours(resp3)
    assert [n.entry_id for n in got] == ["e0", "e1"]
    assert got[0].score == pytest.approx(0.9) and got[0].category == 1
    resp2 = [1, b"k1", [b"__lfr_dist", b"0.25", b"entry_id", b"e1", b"category", b"3"]]
    [only] = _parse_neighbours(resp2)
    assert only.entry_id == "e1" and only.score == pytest.approx(0.75) and only.category == 3


def test_timed_out_query_is_never_decided_on() -> None:
    from lfr.common.errors import DeadlineExceeded

    with pytest.raises(DeadlineExceeded):
        _parse_neighbours({b"results": [], b"warning": [b"Timeout limit was reached"]})


def test_guard_helpers() -> None:
    assert _config_ok("slowlog-log-slower-than", "-1")
    assert not _config_ok("slowlog-log-slower-than", "0")
    assert not _config_ok("slowlog-log-slower-than", "10000")
    assert _config_ok("hide-user-data-from-log", "yes")
    assert not _config_ok("hide-user-data-from-log", "no")
    assert _is_vector_query(b"FT.SEARCH idx *=>[KNN 5 @embedding $vec] PARAMS 2 vec \x01\x02")
    assert not _is_vector_query(b"FT.SEARCH idx @entry_id:{abc}")
    assert not _is_vector_query(b"CONFIG SET slowlog-log-slower-than 0")


def test_resp2_and_resp3_maps_read_alike() -> None:
    resp3 = {b"algorithm": b"HNSW", b"dim": 128, b"flags": []}
    resp2 = [b"algorithm", b"HNSW", b"dim", 128, b"flags", []]
    assert _as_map(resp3) == _as_map(resp2) == {"algorithm": "HNSW", "dim": 128, "flags": []}
