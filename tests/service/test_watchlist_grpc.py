"""lfr.v1.WatchlistService in process (port 0) over fakes: health, reflection, every RPC's
answer and its errors, with the ``lfr-reason`` trailing metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lfr.common import audit
from lfr.common.schema import index_name
from lfr.common.scores import DEFAULT_THRESHOLD
from lfr.common.server import RunningServer
from lfr.common.timeutil import to_datetime, to_timestamp
from lfr.v1 import common_pb2, watchlist_pb2, watchlist_pb2_grpc
from lfr_watchlist.server import SERVICE_NAME, Components, Deps, build_server
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.testing import (
    GROUP,
    NO_FACE,
    PORTRAIT,
    SMALL_FACE,
    FakeAnalyzer,
    FakeClock,
    InMemoryStore,
    RecordingAuditSink,
    harness,
)

Stub = watchlist_pb2_grpc.WatchlistServiceStub


class Service:
    def __init__(self, server: RunningServer, channel: aio.Channel) -> None:
        self.server = server
        self.stub = Stub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.channel = channel
        components = getattr(server.parts, "components", None)
        assert isinstance(components, Components)
        self.components = components
        self.store: InMemoryStore = components.deps.store  # type: ignore[assignment]
        self.analyzer: FakeAnalyzer = components.deps.analyzer  # type: ignore[assignment]
        self.sink: RecordingAuditSink = components.deps.audit_sink  # type: ignore[assignment]
        self.clock: FakeClock = components.deps.clock  # type: ignore[assignment]


@pytest.fixture
async def svc() -> AsyncIterator[Service]:
    fakes = harness()  # its store/analyzer/sink/clock; the server builds its own components
    deps = Deps(fakes.store, fakes.analyzer, fakes.sink, fakes.clock)
    server = await build_server(WatchlistSettings(port=0, purge_interval_s=3600), deps)
    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        yield Service(server, channel)
    await server.stop(0)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def reason_of(err: grpc.aio.AioRpcError) -> str:
    trailing: dict[str, Any] = dict(cast(Any, err.trailing_metadata()) or ())
    return str(trailing.get("lfr-reason", ""))


def governance(svc: Service, **overrides: Any) -> watchlist_pb2.Governance:
    fields: dict[str, Any] = {
        "category": common_pb2.CATEGORY_MISSING_AT_RISK,
        "legal_basis_ref": "case 7",
        "image_source": "family photo",
        "approver": "Insp. Morse",
        "expires_at": to_timestamp(svc.clock() + timedelta(days=7)),
        "image_date": to_timestamp(svc.clock() - timedelta(days=100)),
        "subject_ref": "MP-9",
    }
    fields.update(overrides)
    return watchlist_pb2.Governance(**fields)


async def make_watchlist(svc: Service, wl_id: str = "wl") -> watchlist_pb2.Watchlist:
    return await svc.stub.CreateWatchlist(
        watchlist_pb2.CreateWatchlistRequest(watchlist_id=wl_id, name="Missing", created_by="me"),
        timeout=5,
    )


async def enrol(svc: Service, images: list[bytes], **gov: Any) -> watchlist_pb2.Entry:
    return await svc.stub.Enrol(
        watchlist_pb2.EnrolRequest(
            watchlist_id="wl", images=images, governance=governance(svc, **gov)
        ),
        timeout=5,
    )


def deployment_request(svc: Service, **overrides: Any) -> watchlist_pb2.CreateDeploymentRequest:
    fields: dict[str, Any] = {
        "deployment_id": "dep-1",
        "authorising_officer": "Supt. Lestrade",
        "purpose": "find MP-9",
        "location": "King's Cross",
        "camera_ids": ["cam-1"],
        "watchlist_id": "wl",
        "start_time": to_timestamp(svc.clock()),
        "end_time": to_timestamp(svc.clock() + timedelta(hours=1)),
    }
    fields.update(overrides)
    return watchlist_pb2.CreateDeploymentRequest(**fields)


# --- health and reflection -----------------------------------------------------------------------


async def test_health_is_not_serving_until_redis_and_triton_answer(svc: Service) -> None:
    async def status() -> int:
        reply = await svc.health.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5
        )
        return int(reply.status)

    svc.analyzer.is_ready = False
    await svc.server.check_dependencies()
    assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    svc.analyzer.is_ready = True
    svc.store.up = False
    await svc.server.check_dependencies()
    assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
    assert svc.server.dependency_status == {"redis": False, "triton": True}
    svc.store.up = True
    await svc.server.check_dependencies()
    assert await status() == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(svc: Service) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(svc.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names |= {s.name for s in reply.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


# --- watch lists ---------------------------------------------------------------------------------


async def test_create_get_list_watchlists(svc: Service) -> None:
    created = await svc.stub.CreateWatchlist(
        watchlist_pb2.CreateWatchlistRequest(
            name="Large",
            algorithm=watchlist_pb2.INDEX_ALGORITHM_HNSW,
            keep_enrolment_images=True,
            created_by="Sgt. Lewis",
        ),
        timeout=5,
    )
    assert created.watchlist_id.startswith("wl-")
    assert created.algorithm == watchlist_pb2.INDEX_ALGORITHM_HNSW
    assert created.keep_enrolment_images
    assert to_datetime(created.created_at) == svc.clock()
    flat = await make_watchlist(svc)
    assert flat.algorithm == watchlist_pb2.INDEX_ALGORITHM_FLAT
    await enrol(svc, [PORTRAIT])
    got = await svc.stub.GetWatchlist(watchlist_pb2.GetWatchlistRequest(watchlist_id="wl"))
    assert (got.name, got.entry_count, got.created_by) == ("Missing", 1, "me")
    listed = await svc.stub.ListWatchlists(watchlist_pb2.ListWatchlistsRequest(), timeout=5)
    assert {(w.watchlist_id, w.entry_count) for w in listed.watchlists} == {
        (created.watchlist_id, 0),
        ("wl", 1),
    }
    err = await rpc_error(make_watchlist(svc))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = await rpc_error(
        svc.stub.GetWatchlist(watchlist_pb2.GetWatchlistRequest(watchlist_id="x"))
    )
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.NOT_FOUND, "WATCHLIST_NOT_FOUND")
    err = await rpc_error(svc.stub.GetWatchlist(watchlist_pb2.GetWatchlistRequest()))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "watchlist_id is required" in (err.details() or "")
    err = await rpc_error(make_watchlist(svc, "has space"))
    assert "watchlist_id 'has space' is not a valid id" in (err.details() or "")


# --- entries -------------------------------------------------------------------------------------


async def test_enrol_get_and_list_entries(svc: Service) -> None:
    await make_watchlist(svc)
    entry = await enrol(svc, [PORTRAIT])
    assert entry.watchlist_id == "wl"
    assert entry.image_count == 1
    assert entry.model_version
    assert entry.governance.approver == "Insp. Morse"
    assert entry.governance.category == common_pb2.CATEGORY_MISSING_AT_RISK
    assert to_datetime(entry.governance.image_date) == svc.clock() - timedelta(days=100)
    got = await svc.stub.GetEntry(
        watchlist_pb2.GetEntryRequest(watchlist_id="wl", entry_id=entry.entry_id), timeout=5
    )
    assert got == entry
    second = await enrol(svc, [PORTRAIT])
    page = await svc.stub.ListEntries(
        watchlist_pb2.ListEntriesRequest(watchlist_id="wl", page_size=1), timeout=5
    )
    assert [e.entry_id for e in page.entries] == [entry.entry_id]
    rest = await svc.stub.ListEntries(
        watchlist_pb2.ListEntriesRequest(
            watchlist_id="wl", page_size=1, page_token=page.next_page_token
        ),
        timeout=5,
    )
    assert [e.entry_id for e in rest.entries] == [second.entry_id]
    assert rest.next_page_token == ""
    err = await rpc_error(
        svc.stub.ListEntries(watchlist_pb2.ListEntriesRequest(watchlist_id="wl", page_token="%%"))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (err.details() or "")
    err = await rpc_error(
        svc.stub.GetEntry(watchlist_pb2.GetEntryRequest(watchlist_id="wl", entry_id="e-none"))
    )
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.NOT_FOUND, "ENTRY_NOT_FOUND")


@pytest.mark.parametrize(
    ("images", "reason", "fragment"),
    [
        ([NO_FACE], "NO_FACE", "images[0] holds no face"),
        ([PORTRAIT, GROUP], "MULTIPLE_FACES", "images[1] holds 2 faces"),
        ([SMALL_FACE], "FACE_TOO_SMALL", "the face is 40 px, smaller than the minimum 80 px"),
        ([b"not an image"], "BAD_IMAGE", "images[0]"),
    ],
)
async def test_enrol_bad_images_give_typed_errors(
    svc: Service, images: list[bytes], reason: str, fragment: str
) -> None:
    await make_watchlist(svc)
    before = svc.store.state()
    err = await rpc_error(enrol(svc, images))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(err) == reason
    assert fragment in (err.details() or "")
    assert svc.store.state() == before


@pytest.mark.parametrize(
    "field", ["category", "legal_basis_ref", "image_source", "approver", "expires_at"]
)
async def test_enrol_missing_governance_field_is_named(svc: Service, field: str) -> None:
    await make_watchlist(svc)
    g = governance(svc)
    g.ClearField(field)  # type: ignore[arg-type]
    before = svc.store.state()
    err = await rpc_error(
        svc.stub.Enrol(
            watchlist_pb2.EnrolRequest(watchlist_id="wl", images=[PORTRAIT], governance=g)
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"governance.{field} is required" in (err.details() or "")
    assert reason_of(err) == "MISSING_FIELD"
    assert svc.store.state() == before
    assert svc.analyzer.calls == 0  # refused before any image was analysed


async def test_remove_entry_and_purge_expired(svc: Service) -> None:
    await make_watchlist(svc)
    entry = await enrol(svc, [PORTRAIT])
    short = await enrol(svc, [PORTRAIT], expires_at=to_timestamp(svc.clock() + timedelta(hours=1)))
    err = await rpc_error(
        svc.stub.RemoveEntry(
            watchlist_pb2.RemoveEntryRequest(watchlist_id="wl", entry_id=entry.entry_id)
        )
    )
    assert "requested_by is required" in (err.details() or "")
    removed = await svc.stub.RemoveEntry(
        watchlist_pb2.RemoveEntryRequest(
            watchlist_id="wl", entry_id=entry.entry_id, requested_by="Sgt. Lewis", reason="found"
        ),
        timeout=5,
    )
    assert removed.entry_id == entry.entry_id
    none = await svc.stub.PurgeExpired(watchlist_pb2.PurgeExpiredRequest(), timeout=5)
    assert list(none.purged_entry_ids) == []
    svc.clock.advance(hours=1)
    purged = await svc.stub.PurgeExpired(
        watchlist_pb2.PurgeExpiredRequest(watchlist_id="wl"), timeout=5
    )
    assert list(purged.purged_entry_ids) == [short.entry_id]
    assert svc.store.entries["wl"] == {}
    await svc.components.forwarder.flush()
    assert svc.sink.actions()[-2:] == [audit.ENTRY_REMOVED, audit.ENTRY_EXPIRED]


# --- deployments ---------------------------------------------------------------------------------


async def test_deployment_lifecycle(svc: Service) -> None:
    await make_watchlist(svc)
    await enrol(svc, [PORTRAIT])
    created = await svc.stub.CreateDeployment(deployment_request(svc), timeout=5)
    assert created.state == watchlist_pb2.DEPLOYMENT_STATE_CREATED
    assert created.threshold == pytest.approx(DEFAULT_THRESHOLD)  # 0 asked: the default
    inactive = await svc.stub.ResolveCamera(
        watchlist_pb2.ResolveCameraRequest(camera_id="cam-1"), timeout=5
    )
    assert not inactive.active
    assert not inactive.HasField("deployment")
    started = await svc.stub.StartDeployment(
        watchlist_pb2.StartDeploymentRequest(deployment_id="dep-1", requested_by="Insp. Morse"),
        timeout=5,
    )
    assert started.state == watchlist_pb2.DEPLOYMENT_STATE_ACTIVE
    assert started.snapshot.entry_count == 1
    assert len(started.snapshot.content_hash) == 64
    resolved = await svc.stub.ResolveCamera(
        watchlist_pb2.ResolveCameraRequest(camera_id="cam-1"), timeout=5
    )
    assert resolved.active
    assert resolved.index_name == index_name("wl")
    assert resolved.deployment.deployment_id == "dep-1"
    past = await svc.stub.ResolveCamera(
        watchlist_pb2.ResolveCameraRequest(
            camera_id="cam-1", at=to_timestamp(svc.clock() + timedelta(hours=2))
        ),
        timeout=5,
    )
    assert not past.active  # outside the window
    got = await svc.stub.GetDeployment(watchlist_pb2.GetDeploymentRequest(deployment_id="dep-1"))
    assert got == started
    listed = await svc.stub.ListDeployments(
        watchlist_pb2.ListDeploymentsRequest(state=watchlist_pb2.DEPLOYMENT_STATE_ACTIVE)
    )
    assert [d.deployment_id for d in listed.deployments] == ["dep-1"]
    stopped = await svc.stub.StopDeployment(
        watchlist_pb2.StopDeploymentRequest(
            deployment_id="dep-1", requested_by="Insp. Morse", reason="found"
        ),
        timeout=5,
    )
    assert stopped.state == watchlist_pb2.DEPLOYMENT_STATE_ENDED
    assert stopped.HasField("ended_at")
    after = await svc.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest(camera_id="cam-1"))
    assert not after.active
    await svc.components.forwarder.flush()
    assert svc.sink.actions()[-5:] == [
        audit.DEPLOYMENT_AUTHORISED,
        audit.THRESHOLD_SET,
        audit.DEPLOYMENT_STARTED,
        audit.WATCHLIST_COMPILED,
        audit.DEPLOYMENT_STOPPED,
    ]


async def test_deployment_errors(svc: Service) -> None:
    await make_watchlist(svc)
    err = await rpc_error(svc.stub.CreateDeployment(deployment_request(svc, threshold=0.5)))
    assert (err.code(), reason_of(err)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "THRESHOLD_BELOW_FLOOR",
    )
    err = await rpc_error(svc.stub.CreateDeployment(deployment_request(svc, camera_ids=[])))
    assert "camera_ids needs at least one camera" in (err.details() or "")
    err = await rpc_error(svc.stub.CreateDeployment(deployment_request(svc, watchlist_id="nope")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    later = svc.clock() + timedelta(hours=1)
    await svc.stub.CreateDeployment(
        deployment_request(
            svc,
            deployment_id="dep-late",
            start_time=to_timestamp(later),
            end_time=to_timestamp(later + timedelta(hours=1)),
        )
    )
    err = await rpc_error(
        svc.stub.StartDeployment(
            watchlist_pb2.StartDeploymentRequest(deployment_id="dep-late", requested_by="x")
        )
    )
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "OUTSIDE_WINDOW")
    await svc.stub.CreateDeployment(deployment_request(svc, deployment_id="dep-a"))
    await svc.stub.CreateDeployment(deployment_request(svc, deployment_id="dep-b"))
    await svc.stub.StartDeployment(
        watchlist_pb2.StartDeploymentRequest(deployment_id="dep-a", requested_by="x")
    )
    err = await rpc_error(
        svc.stub.StartDeployment(
            watchlist_pb2.StartDeploymentRequest(deployment_id="dep-b", requested_by="x")
        )
    )
    assert (err.code(), reason_of(err)) == (grpc.StatusCode.FAILED_PRECONDITION, "CAMERA_IN_USE")
    assert "dep-a" in (err.details() or "")
    err = await rpc_error(
        svc.stub.StartDeployment(watchlist_pb2.StartDeploymentRequest(deployment_id="dep-b"))
    )
    assert "requested_by is required" in (err.details() or "")
    err = await rpc_error(
        svc.stub.GetDeployment(watchlist_pb2.GetDeploymentRequest(deployment_id="nope"))
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(svc.stub.ListDeployments(watchlist_pb2.ListDeploymentsRequest(state=9)))  # type: ignore[arg-type]
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(svc.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest()))
    assert "camera_id is required" in (err.details() or "")


async def test_a_deployment_past_its_window_reads_as_ended(svc: Service) -> None:
    await make_watchlist(svc)
    await svc.stub.CreateDeployment(deployment_request(svc))
    await svc.stub.StartDeployment(
        watchlist_pb2.StartDeploymentRequest(deployment_id="dep-1", requested_by="x")
    )
    svc.clock.advance(hours=1)
    got = await svc.stub.GetDeployment(watchlist_pb2.GetDeploymentRequest(deployment_id="dep-1"))
    assert got.state == watchlist_pb2.DEPLOYMENT_STATE_ENDED
    assert got.ended_at == got.end_time
    resolved = await svc.stub.ResolveCamera(watchlist_pb2.ResolveCameraRequest(camera_id="cam-1"))
    assert not resolved.active


async def test_redis_down_is_unavailable(svc: Service) -> None:
    await make_watchlist(svc)
    svc.store.up = False
    err = await rpc_error(svc.stub.ListWatchlists(watchlist_pb2.ListWatchlistsRequest()))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
