"""The watchlist service in process against the real Redis and the real Triton: enrolment of
real photos, KNN per the index contract, every bad input, expiry, windows, and ``kill -9``.

The audit sink is a recording fake here (the path to the real alert service is covered in
test_watchlist_process.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import grpc
import numpy as np
import pytest
import redis
from grpc import aio

from lfr.common import audit
from lfr.common.server import RunningServer
from lfr.common.timeutil import now, to_timestamp
from lfr.inference import Float32Array, TritonFaceAnalyzer
from lfr.v1 import common_pb2, watchlist_pb2, watchlist_pb2_grpc
from lfr_cli.testing import RedisInstance, TritonInstance
from lfr_watchlist.redis_store import RedisStore
from lfr_watchlist.server import Components, Deps, build_server
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.testing import RecordingAuditSink

from .watchlist_support import (
    astronaut,
    hopper,
    hopper_other_view,
    hopper_small,
    knn,
    no_face,
    redis_state,
    two_faces,
)

pytestmark = pytest.mark.integration


@dataclass
class Live:
    server: RunningServer
    stub: watchlist_pb2_grpc.WatchlistServiceAsyncStub
    components: Components
    sink: RecordingAuditSink
    analyzer: TritonFaceAnalyzer
    redis: redis.Redis
    redis_server: RedisInstance


@pytest.fixture
async def live(
    redis_client: redis.Redis, redis_server: RedisInstance, triton_server: TritonInstance
) -> AsyncIterator[Live]:
    settings = WatchlistSettings(
        port=0,
        redis_url=redis_server.url,
        triton_url=triton_server.url,
        purge_interval_s=0.5,
        deployment_check_interval_s=0.2,
    )
    sink = RecordingAuditSink()
    analyzer = TritonFaceAnalyzer(triton_server.url)
    deps = Deps(RedisStore.from_url(redis_server.url), analyzer, sink)
    server = await build_server(settings, deps)
    await server.start()
    for _ in range(100):
        if await server.check_dependencies():
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"dependencies never answered: {server.dependency_status}")
    components = cast(Components, getattr(server.parts, "components", None))
    channel = aio.insecure_channel(server.address)
    yield Live(
        server,
        watchlist_pb2_grpc.WatchlistServiceStub(channel),
        components,
        sink,
        analyzer,
        redis_client,
        redis_server,
    )

    async def teardown() -> None:
        await channel.close(None)
        await server.stop(0)

    try:
        await asyncio.wait_for(teardown(), 20)
    except TimeoutError:  # say where it hangs rather than wait for the test timeout
        for task in asyncio.all_tasks():
            task.print_stack()
        raise


def governance(**overrides: Any) -> watchlist_pb2.Governance:
    fields: dict[str, Any] = {
        "category": common_pb2.CATEGORY_WANTED_BY_COURTS,
        "legal_basis_ref": "warrant 1906/12",
        "image_source": "US Navy portrait",
        "approver": "Insp. Morse",
        "expires_at": to_timestamp(now() + timedelta(days=30)),
        "subject_ref": "HOPPER",
    }
    fields.update(overrides)
    return watchlist_pb2.Governance(**fields)


async def create_watchlist(live: Live, wl_id: str = "wanted") -> None:
    await live.stub.CreateWatchlist(
        watchlist_pb2.CreateWatchlistRequest(watchlist_id=wl_id, name="Wanted"), timeout=10
    )


async def enrol(live: Live, images: list[bytes], **gov: Any) -> watchlist_pb2.Entry:
    request = watchlist_pb2.EnrolRequest(
        watchlist_id="wanted", images=images, governance=governance(**gov)
    )
    return await live.stub.Enrol(request, timeout=30)


async def settled_state(live: Live) -> tuple[dict[bytes, Any], int]:
    """Redis' contents and the audit records delivered, once the audit outbox is forwarded (the
    background forwarder would otherwise change the outbox under the comparison)."""
    await live.components.forwarder.flush()
    return redis_state(live.redis), len(live.sink.records)


async def embeddings_of(live: Live, image: bytes) -> list[Float32Array]:
    return [face.embedding for face in await live.analyzer.analyze(image)]


async def start_deployment(live: Live, dep_id: str = "dep-1", **overrides: Any) -> None:
    fields: dict[str, Any] = {
        "deployment_id": dep_id,
        "authorising_officer": "Supt. Lestrade",
        "purpose": "arrest on warrant",
        "location": "Arlington",
        "camera_ids": ["cam-1"],
        "watchlist_id": "wanted",
        "start_time": to_timestamp(now() - timedelta(seconds=1)),
        "end_time": to_timestamp(now() + timedelta(hours=1)),
    }
    fields.update(overrides)
    await live.stub.CreateDeployment(watchlist_pb2.CreateDeploymentRequest(**fields), timeout=10)
    await live.stub.StartDeployment(
        watchlist_pb2.StartDeploymentRequest(deployment_id=dep_id, requested_by="Insp. Morse"),
        timeout=10,
    )


async def test_hopper_is_found_from_another_view_and_the_astronaut_is_not(live: Live) -> None:
    await create_watchlist(live)
    entry = await enrol(live, [hopper()])
    await start_deployment(live)  # threshold 0: the default
    resolved = await live.stub.ResolveCamera(
        watchlist_pb2.ResolveCameraRequest(camera_id="cam-1"), timeout=10
    )
    assert resolved.active
    threshold = resolved.deployment.threshold

    [probe] = await embeddings_of(live, hopper_other_view())
    hits = knn(live.redis, "wanted", probe)
    assert hits[0][0] == entry.entry_id
    assert hits[0][1] >= threshold

    stranger = await embeddings_of(live, astronaut())
    assert stranger  # HOG finds her face (and one more face-like patch)
    for vector in stranger:
        assert all(score < threshold for _, score in knn(live.redis, "wanted", vector))


@pytest.mark.parametrize(
    ("make_image", "reason", "fragment"),
    [
        (no_face, "NO_FACE", "images[1] holds no face"),
        (two_faces, "MULTIPLE_FACES", "images[1] holds 2 faces"),
        (hopper_small, "FACE_TOO_SMALL", "smaller than the minimum 80 px"),
        (lambda: b"\x89PNG but not really", "BAD_IMAGE", "images[1]"),
    ],
)
async def test_each_bad_image_is_refused_and_the_store_is_unchanged(
    live: Live, make_image: Any, reason: str, fragment: str
) -> None:
    await create_watchlist(live)
    await enrol(live, [hopper()])
    before = await settled_state(live)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await enrol(live, [hopper(), make_image()])  # the good first image is not stored either
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailing = dict(cast(Any, info.value.trailing_metadata()) or ())
    assert trailing.get("lfr-reason") == reason
    assert fragment in (info.value.details() or "")
    assert await settled_state(live) == before


@pytest.mark.parametrize(
    "field", ["category", "legal_basis_ref", "image_source", "approver", "expires_at"]
)
async def test_each_missing_governance_field_is_refused(live: Live, field: str) -> None:
    await create_watchlist(live)
    g = governance()
    g.ClearField(field)  # type: ignore[arg-type]
    before = await settled_state(live)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await live.stub.Enrol(
            watchlist_pb2.EnrolRequest(watchlist_id="wanted", images=[hopper()], governance=g),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"governance.{field} is required" in (info.value.details() or "")
    assert await settled_state(live) == before


async def test_an_expired_entry_is_purged_within_the_interval_and_audited(live: Live) -> None:
    await create_watchlist(live)
    expires = now() + timedelta(seconds=1.5)
    entry = await enrol(live, [hopper()], expires_at=to_timestamp(expires))
    entry_keys = {k for k in live.redis.keys("*") if entry.entry_id.encode() in k}
    assert entry_keys  # vector, metadata and index-membership keys exist
    for _ in range(100):
        if not live.redis.exists(*entry_keys):
            break
        await asyncio.sleep(0.1)
    assert not live.redis.exists(*entry_keys)
    gone_after = now() - expires
    assert gone_after < timedelta(seconds=0.5 + 1.5)  # purge interval, plus slack
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await live.stub.GetEntry(
            watchlist_pb2.GetEntryRequest(watchlist_id="wanted", entry_id=entry.entry_id)
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    await live.components.forwarder.flush()
    [(_, actor, details)] = live.sink.of(audit.ENTRY_EXPIRED)
    assert (actor, details["entry_id"]) == ("system:purge", entry.entry_id)


async def test_windows_and_the_threshold_floor(live: Live) -> None:
    await create_watchlist(live)
    later = now() + timedelta(hours=1)
    await live.stub.CreateDeployment(
        watchlist_pb2.CreateDeploymentRequest(
            deployment_id="dep-later",
            authorising_officer="Supt. Lestrade",
            purpose="p",
            location="l",
            camera_ids=["cam-2"],
            watchlist_id="wanted",
            start_time=to_timestamp(later),
            end_time=to_timestamp(later + timedelta(hours=1)),
        ),
        timeout=10,
    )
    resolved = await live.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest(camera_id="cam-2"))
    assert not resolved.active
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await live.stub.StartDeployment(
            watchlist_pb2.StartDeploymentRequest(deployment_id="dep-later", requested_by="x")
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # A deployment that runs out ends by itself and stops resolving.
    await start_deployment(
        live, "dep-short", camera_ids=["cam-3"], end_time=to_timestamp(now() + timedelta(seconds=1))
    )
    assert (
        await live.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest(camera_id="cam-3"))
    ).active
    await asyncio.sleep(1.5)
    assert live.redis.hget("lfr:cameras", "cam-3") is None  # released by the background check
    resolved = await live.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest(camera_id="cam-3"))
    assert not resolved.active
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await start_deployment(live, "dep-low", camera_ids=["cam-4"], threshold=0.5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "below the configured floor" in (info.value.details() or "")


async def test_entries_and_deployments_survive_redis_kill_9(live: Live) -> None:
    await create_watchlist(live)
    entry = await enrol(live, [hopper()])
    await start_deployment(live)
    [probe] = await embeddings_of(live, hopper_other_view())
    before, _ = await settled_state(live)

    live.redis_server.kill9()
    live.redis_server.restart()

    with live.redis_server.client() as fresh:
        assert redis_state(fresh) == before
        assert knn(fresh, "wanted", probe)[0][0] == entry.entry_id
    got = await live.stub.GetEntry(
        watchlist_pb2.GetEntryRequest(watchlist_id="wanted", entry_id=entry.entry_id), timeout=10
    )
    assert got == entry
    listed = await live.stub.ListEntries(watchlist_pb2.ListEntriesRequest(watchlist_id="wanted"))
    assert [e.entry_id for e in listed.entries] == [entry.entry_id]
    resolved = await live.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest(camera_id="cam-1"))
    assert resolved.active
    assert resolved.deployment.deployment_id == "dep-1"
    assert resolved.deployment.snapshot.entry_count == 1
    # And it keeps working: a second enrolment after the restart is searchable too.
    second = await enrol(live, [hopper_other_view()])
    scores = dict(knn(live.redis, "wanted", probe))
    assert set(scores) == {entry.entry_id, second.entry_id}
    assert np.isfinite(list(scores.values())).all()
