"""The deployment state machine (created -> active -> ended), windows, cameras and audit,
over the in-memory fakes with a settable clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from lfr.common import audit
from lfr.common.errors import AlreadyExists, FailedPrecondition, NotFound
from lfr.common.scores import THRESHOLD_FLOOR
from lfr.v1 import common_pb2
from lfr_watchlist.model import ACTIVE, CREATED, ENDED, Governance, snapshot_of
from lfr_watchlist.requests import DeploymentRequest
from lfr_watchlist.testing import PORTRAIT, Harness, eventually, harness


async def setup_watchlist(h: Harness, entries: int = 2) -> list[str]:
    await h.components.watchlists.create_watchlist(
        watchlist_id="wl",
        name="Wanted",
        description="",
        algorithm="FLAT",
        keep_enrolment_images=False,
        created_by="",
    )
    ids = []
    for i in range(entries):
        g = Governance(
            category=common_pb2.CATEGORY_WANTED_BY_COURTS,
            legal_basis_ref="w",
            image_source="s",
            approver="a",
            expires_at=h.clock() + timedelta(days=1 + i),
        )
        ids.append((await h.components.watchlists.enrol("wl", [PORTRAIT], g)).entry_id)
    return ids


def request(h: Harness, dep_id: str = "dep-1", **overrides: object) -> DeploymentRequest:
    fields: dict[str, object] = {
        "deployment_id": dep_id,
        "authorising_officer": "Supt. Lestrade",
        "purpose": "warrants",
        "location": "Oxford Circus",
        "camera_ids": ("cam-1", "cam-2"),
        "watchlist_id": "wl",
        "threshold": 0.8,
        "threshold_defaulted": True,
        "start_time": h.clock(),
        "end_time": h.clock() + timedelta(hours=2),
    }
    fields.update(overrides)
    return DeploymentRequest(**fields)  # type: ignore[arg-type]


async def test_create_audits_authorisation_and_threshold() -> None:
    h = harness()
    await setup_watchlist(h)
    dep = await h.components.deployments.create(request(h))
    assert dep.state == CREATED
    assert dep.snapshot is None
    with pytest.raises(AlreadyExists):
        await h.components.deployments.create(request(h))
    with pytest.raises(NotFound, match="watch list 'nope' not found"):
        await h.components.deployments.create(request(h, "dep-2", watchlist_id="nope"))
    await h.components.forwarder.flush()
    [(_, actor, authorised)] = h.sink.of(audit.DEPLOYMENT_AUTHORISED)
    assert actor == "Supt. Lestrade"
    assert authorised["camera_ids"] == "cam-1,cam-2"
    assert authorised["purpose"] == "warrants"
    [(_, _, threshold)] = h.sink.of(audit.THRESHOLD_SET)
    assert (threshold["threshold"], threshold["source"], threshold["floor"]) == (
        "0.8",
        "default",
        f"{THRESHOLD_FLOOR:g}",
    )


async def test_start_snapshots_the_watchlist_and_claims_cameras() -> None:
    h = harness()
    ids = await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h))
    started = await deps.start("dep-1", requested_by="Insp. Morse")
    assert started.state == ACTIVE
    assert started.started_at == h.clock()
    assert started.snapshot is not None
    expected = snapshot_of([(i, "dlib-resnet-v1-5pt150") for i in ids], h.clock())
    assert started.snapshot.content_hash == expected.content_hash
    assert started.snapshot.entry_count == 2
    assert h.store.snapshots["dep-1"] == sorted(ids)
    assert h.store.cameras == {"cam-1": "dep-1", "cam-2": "dep-1"}
    # A retried start changes nothing and audits nothing more.
    assert (await deps.start("dep-1", requested_by="Insp. Morse")).started_at == h.clock()
    await h.components.forwarder.flush()
    [(_, actor, compiled)] = h.sink.of(audit.WATCHLIST_COMPILED)
    assert actor == "Insp. Morse"
    assert compiled["content_hash"] == expected.content_hash
    assert compiled["entry_ids"] == ",".join(sorted(ids))
    assert len(h.sink.of(audit.DEPLOYMENT_STARTED)) == 1


async def test_snapshot_leaves_out_expired_entries() -> None:
    h = harness()
    ids = await setup_watchlist(h, entries=2)
    await h.components.deployments.create(request(h, end_time=h.clock() + timedelta(days=2)))
    h.clock.advance(days=1, seconds=1)  # the first entry expired, not yet purged
    started = await h.components.deployments.start("dep-1", requested_by="x")
    assert started.snapshot is not None
    assert started.snapshot.entry_count == 1
    assert h.store.snapshots["dep-1"] == [ids[1]]


async def test_start_outside_the_window_is_refused() -> None:
    h = harness()
    await setup_watchlist(h)
    deps = h.components.deployments
    later = h.clock() + timedelta(hours=1)
    await deps.create(request(h, start_time=later, end_time=later + timedelta(hours=1)))
    with pytest.raises(FailedPrecondition, match="may not start before its window opens") as info:
        await deps.start("dep-1", requested_by="x")
    assert info.value.reason == "OUTSIDE_WINDOW"
    assert h.store.cameras == {}
    h.clock.advance(hours=2)  # the window has passed: the deployment ended unstarted
    with pytest.raises(FailedPrecondition, match="has ended") as info:
        await deps.start("dep-1", requested_by="x")
    assert info.value.reason == "DEPLOYMENT_ENDED"
    assert (await deps.get("dep-1")).state == ENDED


async def test_a_camera_is_in_at_most_one_active_deployment() -> None:
    h = harness()
    await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h, "dep-1"))
    await deps.create(request(h, "dep-2", camera_ids=("cam-9", "cam-2")))
    await deps.start("dep-1", requested_by="x")
    with pytest.raises(FailedPrecondition, match="'cam-2' is in active deployment 'dep-1'") as info:
        await deps.start("dep-2", requested_by="x")
    assert info.value.reason == "CAMERA_IN_USE"
    assert h.store.cameras == {"cam-1": "dep-1", "cam-2": "dep-1"}  # nothing half-claimed
    assert (await deps.get("dep-2")).state == CREATED
    await deps.stop("dep-1", requested_by="x", reason="done")
    assert (await deps.start("dep-2", requested_by="x")).state == ACTIVE
    assert h.store.cameras == {"cam-9": "dep-2", "cam-2": "dep-2"}


async def test_a_camera_held_by_an_overdue_deployment_is_released() -> None:
    h = harness()
    await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h, "dep-1", end_time=h.clock() + timedelta(minutes=10)))
    await deps.create(request(h, "dep-2", end_time=h.clock() + timedelta(hours=3)))
    await deps.start("dep-1", requested_by="x")
    h.clock.advance(minutes=10)
    assert (await deps.start("dep-2", requested_by="x")).state == ACTIVE
    assert h.store.deployments["dep-1"].state == ENDED


async def test_stop_ends_and_releases_and_is_idempotent() -> None:
    h = harness()
    await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h))
    await deps.start("dep-1", requested_by="x")
    h.clock.advance(minutes=5)
    stopped = await deps.stop("dep-1", requested_by="Insp. Morse", reason="incident over")
    assert stopped.state == ENDED
    assert stopped.ended_at == h.clock()
    assert h.store.cameras == {}
    assert await deps.stop("dep-1", requested_by="x", reason="") == stopped
    with pytest.raises(FailedPrecondition, match="has ended"):
        await deps.start("dep-1", requested_by="x")
    await h.components.forwarder.flush()
    [(_, actor, details)] = h.sink.of(audit.DEPLOYMENT_STOPPED)
    assert (actor, details["reason"], details["previous_state"]) == (
        "Insp. Morse",
        "incident over",
        "active",
    )


async def test_a_created_deployment_can_be_cancelled() -> None:
    h = harness()
    await setup_watchlist(h)
    await h.components.deployments.create(request(h))
    stopped = await h.components.deployments.stop("dep-1", requested_by="x", reason="cancelled")
    assert stopped.state == ENDED
    assert stopped.started_at is None


async def test_resolve_answers_only_for_an_active_deployment_in_its_window() -> None:
    h = harness()
    await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h, end_time=h.clock() + timedelta(hours=1)))
    assert await deps.resolve("cam-1") is None  # created, not started
    await deps.start("dep-1", requested_by="x")
    found = await deps.resolve("cam-1")
    assert found is not None
    assert (found.deployment_id, found.threshold) == ("dep-1", 0.8)
    assert await deps.resolve("cam-7") is None
    assert await deps.resolve("cam-1", h.clock() - timedelta(minutes=1)) is None  # before start
    assert await deps.resolve("cam-1", h.clock() + timedelta(hours=1)) is None  # at the end
    h.clock.advance(hours=1)
    assert await deps.resolve("cam-1") is None
    assert h.store.deployments["dep-1"].state == ENDED  # ended lazily by the read
    assert h.store.cameras == {}
    await h.components.forwarder.flush()
    [(_, actor, details)] = h.sink.of(audit.DEPLOYMENT_ENDED)
    assert (actor, details["reason"]) == ("system:scheduler", "end_time reached")


async def test_get_and_list_report_an_overdue_deployment_as_ended() -> None:
    h = harness()
    await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h, "dep-1", end_time=h.clock() + timedelta(minutes=30)))
    await deps.create(request(h, "dep-2", camera_ids=("cam-5",)))
    await deps.start("dep-1", requested_by="x")
    assert [d.deployment_id for d in await deps.list_deployments(ACTIVE)] == ["dep-1"]
    h.clock.advance(minutes=30)
    got = await deps.get("dep-1")
    assert got.state == ENDED
    assert got.ended_at == got.end_time
    assert [d.deployment_id for d in await deps.list_deployments(ENDED)] == ["dep-1"]
    assert [d.deployment_id for d in await deps.list_deployments(CREATED)] == ["dep-2"]
    assert len(await deps.list_deployments()) == 2
    with pytest.raises(NotFound):
        await deps.get("nope")


async def test_scheduler_ends_deployments_at_their_end_time() -> None:
    h = harness(deployment_check_interval_s=0.02)
    await setup_watchlist(h)
    deps = h.components.deployments
    await deps.create(request(h, end_time=h.clock() + timedelta(minutes=1)))
    await deps.start("dep-1", requested_by="x")
    task = asyncio.create_task(deps.run_scheduler())
    try:
        await asyncio.sleep(0.05)
        assert h.store.deployments["dep-1"].state == ACTIVE
        h.clock.advance(minutes=1)
        await eventually(lambda: h.store.deployments["dep-1"].state == ENDED)
        assert h.store.deployments["dep-1"].state == ENDED
        assert h.store.cameras == {}
    finally:
        task.cancel()
