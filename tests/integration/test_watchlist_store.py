"""The watchlist ``Store`` contract, run against the real Redis (``RedisStore``) and the
in-memory fake the unit tests rely on, plus what only Redis can show: the vector index per the
contract, the key layout, KNN, and durability across ``kill -9``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import redis

from lfr.common import schema
from lfr.v1 import common_pb2
from lfr_cli.testing import RedisInstance
from lfr_watchlist.model import (
    ACTIVE,
    CREATED,
    ENDED,
    AuditEvent,
    DeploymentRecord,
    EntryRecord,
    Governance,
    WatchlistRecord,
    snapshot_of,
)
from lfr_watchlist.redis_store import OUTBOX_KEY, RedisStore, meta_key, vector_key
from lfr_watchlist.store import CameraClaimed, StaleState, Store
from lfr_watchlist.testing import InMemoryStore, unit_vector

from .watchlist_support import knn, redis_state

# Whole seconds from now, so Redis' float scores and the fake agree exactly.
NOW = datetime.fromtimestamp(int(time.time()), UTC)
EVENT = AuditEvent("test.event", "tester", {"k": "v"})


def watchlist(wl_id: str = "wl", algorithm: str = "FLAT") -> WatchlistRecord:
    return WatchlistRecord(wl_id, "Wanted", "desc", algorithm, False, NOW, "me")


def entry(entry_id: str, *, wl_id: str = "wl", days: float = 30, images: int = 1) -> EntryRecord:
    return EntryRecord(
        entry_id=entry_id,
        watchlist_id=wl_id,
        governance=Governance(
            category=common_pb2.CATEGORY_RISK_OF_HARM,
            legal_basis_ref="order 9",
            image_source="cctv still",
            approver="Insp. Morse",
            expires_at=NOW + timedelta(days=days),
            image_date=NOW - timedelta(days=2),
            subject_ref="S-1",
        ),
        image_count=images,
        enrolled_at=NOW,
        model_version="m1",
    )


def deployment(dep_id: str, cameras: tuple[str, ...], *, hours: float = 2) -> DeploymentRecord:
    return DeploymentRecord(
        deployment_id=dep_id,
        authorising_officer="Supt. Lestrade",
        purpose="p",
        location="l",
        camera_ids=cameras,
        watchlist_id="wl",
        threshold=0.93,
        start_time=NOW - timedelta(minutes=1),
        end_time=NOW + timedelta(hours=hours),
        state=CREATED,
        created_at=NOW,
    )


@pytest.fixture
async def redis_store(
    redis_client: redis.Redis, redis_server: RedisInstance
) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_server.url)
    yield store
    await store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield InMemoryStore()
        return
    server: RedisInstance = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_client")  # flushed
    real = RedisStore.from_url(server.url)
    yield real
    await real.close()


# --- the contract, on both -----------------------------------------------------------------------


async def test_watchlists(store: Store) -> None:
    assert await store.ping()
    assert await store.create_watchlist(watchlist("a"), EVENT)
    assert await store.create_watchlist(
        dataclasses.replace(watchlist("b", "HNSW"), created_at=NOW + timedelta(seconds=1)), EVENT
    )
    assert not await store.create_watchlist(watchlist("a"), EVENT)
    assert await store.get_watchlist("a") == watchlist("a")
    assert await store.get_watchlist("nope") is None
    assert [w.watchlist_id for w in await store.list_watchlists()] == ["a", "b"]
    assert await store.entry_counts(["a", "b", "nope"]) == [0, 0, 0]


async def test_entries(store: Store) -> None:
    await store.create_watchlist(watchlist(), EVENT)
    first, second = entry("e1", days=1, images=2), entry("e2", days=10)
    await store.add_entry(first, [unit_vector(1), unit_vector(2)], [], EVENT)
    await store.add_entry(second, [unit_vector(3)], [b"photo"], EVENT)
    assert await store.get_entry("wl", "e1") == first
    assert await store.get_entry("wl", "nope") is None
    assert await store.entry_counts(["wl"]) == [2]
    assert [e.entry_id for e in await store.list_entries("wl", after="", limit=1)] == ["e1"]
    assert [e.entry_id for e in await store.list_entries("wl", after="e1", limit=5)] == ["e2"]
    assert await store.list_entries("wl", after="e2", limit=5) == []
    assert sorted(await store.live_entries("wl", NOW)) == [("e1", "m1"), ("e2", "m1")]
    assert await store.expired_entry_ids("wl", NOW) == []
    expiry = NOW + timedelta(days=1)
    assert await store.expired_entry_ids("wl", expiry) == ["e1"]  # expires_at <= now
    assert await store.live_entries("wl", expiry) == [("e2", "m1")]
    assert await store.remove_entry("wl", "e1", EVENT)
    assert not await store.remove_entry("wl", "e1", EVENT)
    assert await store.entry_counts(["wl"]) == [1]
    assert await store.expired_entry_ids("wl", expiry) == []


async def test_deployment_transitions(store: Store) -> None:
    one, two = deployment("d1", ("c1", "c2")), deployment("d2", ("c2", "c3"))
    assert await store.create_deployment(one, [EVENT, EVENT])
    assert not await store.create_deployment(one, [])
    await store.create_deployment(dataclasses.replace(two, created_at=NOW + timedelta(1)), [])
    assert await store.get_deployment("d1") == one
    assert [d.deployment_id for d in await store.list_deployments()] == ["d1", "d2"]
    snap = snapshot_of([("e1", "m1")], NOW)
    active = dataclasses.replace(one, state=ACTIVE, started_at=NOW, snapshot=snap)
    await store.transition_deployment(active, expected_state=CREATED, events=[EVENT])
    got = await store.get_deployment("d1")
    assert got is not None
    assert got.snapshot is not None
    assert (got.state, got.snapshot.content_hash, got.snapshot.entry_count) == (
        ACTIVE,
        snap.content_hash,
        1,
    )
    assert await store.deployment_for_camera("c1") == "d1"
    assert await store.deployment_for_camera("c9") is None
    with pytest.raises(StaleState):
        await store.transition_deployment(active, expected_state=CREATED, events=[])
    with pytest.raises(CameraClaimed) as claim:
        await store.transition_deployment(
            dataclasses.replace(two, state=ACTIVE), expected_state=CREATED, events=[]
        )
    assert (claim.value.camera_id, claim.value.deployment_id) == ("c2", "d1")
    assert await store.deployment_for_camera("c3") is None  # nothing half-claimed
    assert await store.overdue_deployment_ids(NOW) == []
    assert await store.overdue_deployment_ids(NOW + timedelta(hours=2)) == ["d1", "d2"]
    ended = dataclasses.replace(active, state=ENDED, ended_at=NOW)
    await store.transition_deployment(ended, expected_state=ACTIVE, events=[EVENT])
    assert await store.deployment_for_camera("c1") is None
    assert await store.overdue_deployment_ids(NOW + timedelta(hours=2)) == ["d2"]
    await store.transition_deployment(
        dataclasses.replace(two, state=ACTIVE, started_at=NOW), expected_state=CREATED, events=[]
    )
    assert await store.deployment_for_camera("c2") == "d2"


async def test_audit_outbox_keeps_order_until_acknowledged(store: Store) -> None:
    await store.create_watchlist(watchlist(), AuditEvent("a.one", "x", {"n": "1"}))
    await store.add_entry(entry("e1"), [unit_vector(1)], [], AuditEvent("a.two", "y", {}))
    pending = await store.pending_audit(10)
    assert [(e.action, e.actor, e.details) for _, e in pending] == [
        ("a.one", "x", {"n": "1"}),
        ("a.two", "y", {}),
    ]
    await store.ack_audit([pending[0][0]])
    assert [e.action for _, e in await store.pending_audit(10)] == ["a.two"]
    assert len(await store.pending_audit(1)) == 1


# --- what only Redis shows -----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("algorithm", ["FLAT", "HNSW"])
async def test_index_follows_the_contract(
    redis_store: RedisStore, redis_client: redis.Redis, algorithm: str
) -> None:
    await redis_store.create_watchlist(watchlist("wl", algorithm), EVENT)
    info = redis_client.ft(schema.index_name("wl")).info()  # type: ignore[no-untyped-call]
    attributes = {a[1]: dict(zip(a[::2], a[1::2], strict=False)) for a in info["attributes"]}
    vector = attributes[schema.EMBEDDING_FIELD]
    assert vector["type"] == "VECTOR"
    assert vector["algorithm"] == algorithm
    assert vector["distance_metric"] == "COSINE"
    assert int(vector["dim"]) == schema.EMBEDDING_DIM
    assert vector["data_type"] == "FLOAT32"
    assert attributes["entry_id"]["type"] == "TAG"
    assert attributes["expires_at"]["type"] == "NUMERIC"
    assert attributes["category"]["type"] == "NUMERIC"
    assert info["index_definition"]["prefixes"] == [schema.entry_prefix("wl")]


@pytest.mark.integration
async def test_vectors_are_searchable_and_metadata_stays_outside_the_index(
    redis_store: RedisStore, redis_client: redis.Redis
) -> None:
    await redis_store.create_watchlist(watchlist(), EVENT)
    before = set(redis_client.keys("*"))
    await redis_store.add_entry(entry("e1", images=2), [unit_vector(1), unit_vector(2)], [], EVENT)
    await redis_store.add_entry(entry("e2"), [unit_vector(3)], [b"jpeg"], EVENT)
    vector_hash: dict[bytes, bytes] = redis_client.hgetall(vector_key("wl", "e1", 1))  # type: ignore[assignment]
    assert np.frombuffer(vector_hash[b"embedding"], "<f4").tolist() == unit_vector(2).tolist()
    assert vector_hash[b"entry_id"] == b"e1"
    assert float(vector_hash[b"expires_at"]) == (NOW + timedelta(days=30)).timestamp()
    assert int(vector_hash[b"category"]) == common_pb2.CATEGORY_RISK_OF_HARM
    assert vector_hash[b"subject_ref"] == b"S-1"
    assert not meta_key("wl", "e1").startswith(schema.entry_prefix("wl"))
    info = redis_client.ft(schema.index_name("wl")).info()  # type: ignore[no-untyped-call]
    assert int(info["num_docs"]) == 3
    hits = knn(redis_client, "wl", unit_vector(2))
    assert hits[0][0] == "e1"
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    # Removing an entry leaves nothing of it behind: vectors, metadata, photos.
    await redis_store.remove_entry("wl", "e2", EVENT)
    await redis_store.remove_entry("wl", "e1", EVENT)
    assert set(redis_client.keys("*")) == before | {OUTBOX_KEY.encode()}
    assert knn(redis_client, "wl", unit_vector(2)) == []


@pytest.mark.integration
async def test_an_expired_entry_is_not_found_even_before_the_purge(
    redis_store: RedisStore, redis_client: redis.Redis
) -> None:
    await redis_store.create_watchlist(watchlist(), EVENT)
    soon = dataclasses.replace(
        entry("e1"),
        governance=dataclasses.replace(
            entry("e1").governance, expires_at=datetime.now(UTC) + timedelta(seconds=1)
        ),
    )
    await redis_store.add_entry(soon, [unit_vector(1)], [], EVENT)
    assert [e for e, _ in knn(redis_client, "wl", unit_vector(1))] == ["e1"]
    await asyncio.sleep(1.1)
    assert knn(redis_client, "wl", unit_vector(1)) == []


@pytest.mark.integration
async def test_everything_survives_kill_9(
    redis_store: RedisStore, redis_client: redis.Redis, redis_server: RedisInstance
) -> None:
    await redis_store.create_watchlist(watchlist("wl", "HNSW"), EVENT)
    await redis_store.add_entry(entry("e1"), [unit_vector(1)], [], EVENT)
    await redis_store.add_entry(entry("e2", images=2), [unit_vector(2), unit_vector(3)], [], EVENT)
    dep = dataclasses.replace(
        deployment("d1", ("c1",)),
        state=ACTIVE,
        started_at=NOW,
        snapshot=snapshot_of([("e1", "m1"), ("e2", "m1")], NOW),
    )
    await redis_store.create_deployment(deployment("d1", ("c1",)), [EVENT])
    await redis_store.transition_deployment(dep, expected_state=CREATED, events=[EVENT])
    before = redis_state(redis_client)

    redis_server.kill9()
    redis_server.restart()

    with redis_server.client() as fresh:
        assert redis_state(fresh) == before
        assert [e for e, _ in knn(fresh, "wl", unit_vector(3))][:1] == ["e2"]
        assert [e for e, _ in knn(fresh, "wl", unit_vector(1))][:1] == ["e1"]
    # The service's own client reconnects by itself.
    got = await redis_store.get_deployment("d1")
    assert got is not None
    assert got.state == ACTIVE
    assert dep.snapshot is not None
    assert got.snapshot == dataclasses.replace(dep.snapshot, entry_ids=())
    assert await redis_store.snapshot_entry_ids("d1") == ["e1", "e2"]
    assert await redis_store.deployment_for_camera("c1") == "d1"
    assert [e.entry_id for e in await redis_store.list_entries("wl", after="", limit=10)] == [
        "e1",
        "e2",
    ]
    assert len(await redis_store.pending_audit(100)) == 5
