"""The match decision against fakes of its three adapters (index, resolver, publisher)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest

from lfr.common.errors import FailedPrecondition, InvalidArgument, LfrError, Unavailable
from lfr.v1 import alert_pb2, match_pb2
from lfr_match import probe
from lfr_match.metrics import MatchMetrics
from lfr_match.ports import ActiveDeployment, Neighbour, Published, Vector
from lfr_match.servicer import MatchServiceServicer
from lfr_match.settings import MatchSettings

DEP = ActiveDeployment(
    deployment_id="dep-1",
    watchlist_id="wl-1",
    index_name="lfr:idx:wl:wl-1",
    threshold=0.92,
    location="high-street",
)


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(128)
    return [float(x) for x in v / np.linalg.norm(v)]


@dataclass
class FakeIndex:
    neighbours: list[Neighbour] = field(default_factory=list)
    queries: list[tuple[str, int]] = field(default_factory=list)
    error: LfrError | None = None

    async def knn(
        self, index_name: str, vector: Vector, k: int, *, now_epoch: float
    ) -> list[Neighbour]:
        assert vector.dtype == np.float32 and vector.shape == (128,)
        self.queries.append((index_name, k))
        if self.error is not None:
            raise self.error
        return self.neighbours

    async def ready(self) -> bool:
        return True

    async def privacy_ok(self) -> bool:
        return True

    async def close(self) -> None:
        pass


@dataclass
class FakeResolver:
    deployments: dict[str, ActiveDeployment] = field(default_factory=dict)
    error: LfrError | None = None

    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        if self.error is not None:
            raise self.error
        return self.deployments.get(camera_id)

    async def close(self) -> None:
        pass


@dataclass
class FakePublisher:
    events: list[alert_pb2.MatchEvent] = field(default_factory=list)
    deadlines: list[float] = field(default_factory=list)
    error: LfrError | None = None
    delay_s: float = 0.0

    async def publish(self, event: alert_pb2.MatchEvent, *, deadline_s: float) -> Published:
        self.deadlines.append(deadline_s)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        self.events.append(event)
        return Published(alert_id=f"alert-{len(self.events)}")

    async def close(self) -> None:
        pass


class FakeContext:
    def __init__(self, remaining: float | None = None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining


def ctx(remaining: float | None = None) -> Any:
    """A stand-in for grpc.aio.ServicerContext (only the deadline is read)."""
    return FakeContext(remaining)


@dataclass
class Rig:
    servicer: MatchServiceServicer
    index: FakeIndex
    resolver: FakeResolver
    publisher: FakePublisher
    metrics: MatchMetrics


@pytest.fixture
def rig() -> Rig:
    index = FakeIndex()
    resolver = FakeResolver({"cam-1": DEP})
    publisher = FakePublisher()
    metrics = MatchMetrics()
    # Synthetic scores: the floor is set here, not taken from the calibrated default.
    settings = MatchSettings(port=0, publish_deadline_s=3.0, min_threshold=0.5)
    servicer = MatchServiceServicer(
        settings,
        index=index,
        resolver=resolver,
        publisher=publisher,
        metrics=metrics,
        wall_clock=lambda: 1_800_000_000.0,
    )
    return Rig(servicer, index, resolver, publisher, metrics)


def request(**overrides: Any) -> match_pb2.MatchRequest:
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "camera_id": "cam-1",
        "embedding": unit(1),
        "crop_jpeg": b"\xff\xd8jpeg",
        "model_version": "dlib-1",
        "track_id": 7,
    }
    fields.update(overrides)
    return match_pb2.MatchRequest(**fields)


async def match(rig: Rig, req: match_pb2.MatchRequest, remaining: float | None = None) -> Any:
    return await rig.servicer.Match(req, ctx(remaining))


async def test_match_above_threshold_is_published_then_acknowledged(rig: Rig) -> None:
    rig.index.neighbours = [
        Neighbour("e-2", 0.70, 2, "ref-2"),
        Neighbour("e-1", 0.96, 1, "ref-1"),
    ]
    reply = await match(rig, request())
    assert reply.outcome == match_pb2.MATCH_OUTCOME_MATCHED
    assert reply.match.entry_id == "e-1" and reply.match.rank == 1
    assert reply.match.watchlist_id == "wl-1"
    assert reply.match.score == pytest.approx(0.96)
    assert reply.deployment_id == "dep-1"
    assert reply.event_id == probe.event_id("dep-1", "req-1")
    assert reply.alert_id == "alert-1"
    [event] = rig.publisher.events
    assert event.event_id == reply.event_id
    assert (event.entry_id, event.subject_ref, event.category) == ("e-1", "ref-1", 1)
    assert event.threshold == pytest.approx(0.92) and event.score == pytest.approx(0.96)
    assert event.location == "high-street" and event.camera_id == "cam-1"
    assert event.crop_jpeg == b"\xff\xd8jpeg" and event.track_id == 7
    assert event.model_version == "dlib-1"
    assert event.capture_time.seconds == 1_800_000_000  # unset: the time it was received
    assert rig.index.queries == [("lfr:idx:wl:wl-1", 5)]
    assert rig.metrics.matches == 1 and rig.metrics.probes == 1


async def test_score_equal_to_threshold_matches(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.92, 1, "r")]
    reply = await match(rig, request())
    assert reply.outcome == match_pb2.MATCH_OUTCOME_MATCHED


async def test_below_threshold_is_dropped_and_nothing_published(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.91, 1, "r")]
    reply = await match(rig, request())
    assert reply.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH
    assert reply.top_score == pytest.approx(0.91)
    assert not reply.HasField("match") and reply.event_id == ""
    assert rig.publisher.events == []
    assert rig.metrics.non_matches == 1


async def test_empty_watch_list_is_a_non_match(rig: Rig) -> None:
    reply = await match(rig, request())
    assert reply.outcome == match_pb2.MATCH_OUTCOME_NO_MATCH
    assert reply.top_score == -1.0


async def test_camera_without_deployment_is_refused_and_counted(rig: Rig) -> None:
    with pytest.raises(FailedPrecondition) as info:
        await match(rig, request(camera_id="cam-elsewhere"))
    assert info.value.reason == "NO_DEPLOYMENT"
    assert "cam-elsewhere" in info.value.message
    assert rig.index.queries == []  # never compared with anything
    stats = rig.metrics.snapshot()
    assert stats.refused_no_deployment == 1 and stats.probes == 1


async def test_threshold_below_floor_is_refused(rig: Rig) -> None:
    rig.resolver.deployments["cam-1"] = ActiveDeployment("d", "w", "i", 0.1, "x")
    with pytest.raises(FailedPrecondition) as info:
        await match(rig, request())
    assert info.value.reason == "THRESHOLD_BELOW_FLOOR"
    assert rig.index.queries == []


@pytest.mark.parametrize(
    ("overrides", "reason", "words"),
    [
        ({"request_id": ""}, "NO_REQUEST_ID", "request_id"),
        ({"camera_id": ""}, "NO_CAMERA_ID", "camera_id"),
        ({"embedding": unit(1)[:127]}, "BAD_EMBEDDING", "127 values"),
        ({"embedding": []}, "BAD_EMBEDDING", "0 values"),
        ({"embedding": [*unit(1)[:5], float("nan"), *unit(1)[6:]]}, "BAD_EMBEDDING", "index 5"),
        ({"embedding": [x * 2 for x in unit(1)]}, "BAD_EMBEDDING", "L2-normalised"),
        ({"top_k": 101}, "BAD_TOP_K", "top_k"),
        ({"crop_jpeg": b"x" * (2 * 1024 * 1024 + 1)}, "CROP_TOO_LARGE", "crop_jpeg"),
    ],
)
async def test_bad_probes_are_refused_naming_the_problem(
    rig: Rig, overrides: dict[str, Any], reason: str, words: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        await match(rig, request(**overrides))
    assert info.value.reason == reason
    assert words in info.value.message
    assert rig.metrics.refused_invalid == 1
    assert rig.index.queries == []


async def test_error_messages_carry_no_embedding_values(rig: Rig) -> None:
    values = [x * 3 for x in unit(9)]
    with pytest.raises(InvalidArgument) as info:
        await match(rig, request(embedding=values))
    message = info.value.message
    for value in values:
        assert f"{value:.3f}" not in message
    assert f"{np.linalg.norm(values):.2f}" not in message  # not even the norm


async def test_publish_failure_is_unavailable_and_counted(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.95, 1, "r")]
    rig.publisher.error = Unavailable("alert down", reason="ALERT_UNAVAILABLE")
    with pytest.raises(Unavailable):
        await match(rig, request())
    assert rig.metrics.publish_failures == 1 and rig.metrics.matches == 0


async def test_publish_budget_is_bounded_by_the_callers_deadline(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.95, 1, "r")]
    await match(rig, request(), remaining=1.0)
    await match(rig, request(request_id="r2"), remaining=None)
    assert rig.publisher.deadlines[0] == pytest.approx(0.9)
    assert rig.publisher.deadlines[1] == pytest.approx(3.0)


async def test_top_k_from_request_or_default(rig: Rig) -> None:
    await match(rig, request(top_k=17))
    assert rig.index.queries[-1][1] == 17


async def test_resolver_and_index_failures_propagate_as_failures(rig: Rig) -> None:
    rig.resolver.error = Unavailable("watchlist down", reason="WATCHLIST_UNAVAILABLE")
    with pytest.raises(Unavailable):
        await match(rig, request())
    rig.resolver.error = None
    rig.index.error = Unavailable("redis down", reason="REDIS_UNAVAILABLE")
    with pytest.raises(Unavailable):
        await match(rig, request())
    assert rig.metrics.refused_invalid == 0 and rig.metrics.refused_no_deployment == 0


async def _stream(reqs: list[match_pb2.MatchRequest]) -> AsyncIterator[match_pb2.MatchRequest]:
    for r in reqs:
        yield r


async def test_stream_answers_in_order_with_per_item_errors(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.95, 1, "r")]
    rig.publisher.delay_s = 0.05  # matches are slower than refusals
    reqs = [
        request(request_id="a"),
        request(request_id="b", camera_id="nowhere"),
        request(request_id="c", embedding=[1.0]),
        request(request_id="d"),
    ]
    replies = [r async for r in rig.servicer.MatchStream(_stream(reqs), ctx())]
    assert [r.request_id for r in replies] == ["a", "b", "c", "d"]
    assert replies[0].outcome == match_pb2.MATCH_OUTCOME_MATCHED
    assert replies[1].outcome == match_pb2.MATCH_OUTCOME_REFUSED
    assert replies[1].error.reason == "NO_DEPLOYMENT"
    assert replies[1].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert replies[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[3].outcome == match_pb2.MATCH_OUTCOME_MATCHED


async def test_stream_survives_an_unexpected_error(rig: Rig) -> None:
    class Boom(FakeIndex):
        async def knn(
            self, index_name: str, vector: Vector, k: int, *, now_epoch: float
        ) -> list[Neighbour]:
            raise RuntimeError("bug")

    rig.servicer._index = Boom()
    replies = [
        r
        async for r in rig.servicer.MatchStream(
            _stream([request(request_id="x"), request(request_id="y")]), ctx()
        )
    ]
    assert [r.error.reason for r in replies] == ["INTERNAL", "INTERNAL"]
    assert "bug" not in replies[0].error.message


async def test_stream_decides_concurrently(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.95, 1, "r")]
    rig.publisher.delay_s = 0.2
    reqs = [request(request_id=str(i)) for i in range(8)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    replies = [r async for r in rig.servicer.MatchStream(_stream(reqs), ctx())]
    assert len(replies) == 8
    assert loop.time() - start < 8 * 0.2 / 2  # well under the serial time


async def test_get_stats(rig: Rig) -> None:
    rig.index.neighbours = [Neighbour("e-1", 0.95, 1, "r")]
    await match(rig, request())
    rig.index.neighbours = [Neighbour("e-1", 0.1, 1, "r")]
    await match(rig, request(request_id="2"))
    with pytest.raises(InvalidArgument):
        await match(rig, request(embedding=[]))
    stats = await rig.servicer.GetStats(match_pb2.GetMatchStatsRequest(), ctx())
    assert (stats.probes, stats.matches, stats.non_matches, stats.refused_invalid) == (3, 1, 1, 1)
    assert stats.knn_latency.count == 2
    assert stats.knn_latency.max_ms >= stats.knn_latency.p50_ms > 0
    assert stats.probes_per_second > 0
