"""The fan-out hub and subscriber queues, against the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lfr.common.errors import ResourceExhausted, Unavailable
from lfr.v1 import alert_pb2
from lfr_alert.fanout import AlertHub, Overflowed, Subscription
from lfr_alert.memory_store import InMemoryAlertStore
from lfr_alert.store import AuditEntry, Batch, NewAlert


def alert(n: int, camera: str = "cam-1") -> alert_pb2.Alert:
    return alert_pb2.Alert(
        alert_id=f"a{n}", cursor=f"{1000 + n}-0", event=alert_pb2.MatchEvent(camera_id=camera)
    )


async def publish(store: InMemoryAlertStore, n: int) -> str:
    pb = alert(n).SerializeToString()
    outcome = await store.publish(
        NewAlert(f"a{n}", f"e{n}", f"k{n}", 0, 2**50, pb, AuditEntry(f"r{n}", "t", "alert.raised"))
    )
    return outcome.cursor


def test_a_subscription_queues_only_what_its_filter_passes() -> None:
    sub = Subscription("s", alert_pb2.AlertFilter(camera_ids=["cam-2"]), capacity=10)
    assert sub.offer(alert(1, "cam-1")) and sub.offer(alert(2, "cam-2"))
    assert asyncio.run(sub.next()).alert_id == "a2"


async def test_an_overflowing_subscription_is_cut_off_at_once() -> None:
    sub = Subscription("s", alert_pb2.AlertFilter(), capacity=2)
    assert sub.offer(alert(1)) and sub.offer(alert(2))
    assert not sub.offer(alert(3))
    assert not sub.active
    with pytest.raises(Overflowed):
        await sub.next()  # queued alerts are dropped: the client resumes from its cursor
    assert not sub.offer(alert(4))


async def test_a_closed_subscription_raises_its_error() -> None:
    sub = Subscription("s", alert_pb2.AlertFilter(), capacity=2)
    waiting = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    sub.close(Unavailable("bye"))
    with pytest.raises(Unavailable):
        await waiting


def test_register_returns_the_position_the_hub_delivers_after() -> None:
    hub = AlertHub(InMemoryAlertStore(), max_subscribers=1)
    hub._ready.set()
    hub.dispatch(Batch("1001-0", [alert(1)]))
    early = Subscription("early", alert_pb2.AlertFilter(), capacity=10)
    assert hub.register(early) == "1001-0"
    hub.dispatch(Batch("1003-0", [alert(2), alert(3)]))
    assert hub.position == "1003-0"
    assert [asyncio.run(early.next()).alert_id for _ in range(2)] == ["a2", "a3"]
    with pytest.raises(ResourceExhausted):
        hub.register(Subscription("one too many", alert_pb2.AlertFilter(), capacity=1))


def test_the_hub_drops_a_cut_off_subscriber_and_keeps_serving_the_rest() -> None:
    hub = AlertHub(InMemoryAlertStore(), max_subscribers=10)
    hub._ready.set()
    slow = Subscription("slow", alert_pb2.AlertFilter(), capacity=1)
    fast = Subscription("fast", alert_pb2.AlertFilter(), capacity=100)
    hub.register(slow)
    hub.register(fast)
    hub.dispatch(Batch("1003-0", [alert(1), alert(2), alert(3)]))
    assert hub.subscriber_count == 1 and hub.cut_off == 1
    assert [asyncio.run(fast.next()).alert_id for _ in range(3)] == ["a1", "a2", "a3"]


@pytest.fixture
async def running_hub() -> AsyncIterator[tuple[InMemoryAlertStore, AlertHub]]:
    store = InMemoryAlertStore()
    hub = AlertHub(store, max_subscribers=10, block_ms=50)
    task = asyncio.create_task(hub.run())
    await hub.wait_ready(2)
    yield store, hub
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_running_hub_follows_the_store(
    running_hub: tuple[InMemoryAlertStore, AlertHub],
) -> None:
    store, hub = running_hub
    sub = Subscription("s", alert_pb2.AlertFilter(), capacity=10)
    hub.register(sub)
    cursor = await publish(store, 1)
    got = await asyncio.wait_for(sub.next(), 2)
    assert got.alert_id == "a1" and got.cursor == cursor


async def test_shutting_the_hub_down_ends_every_subscription() -> None:
    hub = AlertHub(InMemoryAlertStore(), max_subscribers=10, block_ms=50)
    task = asyncio.create_task(hub.run())
    await hub.wait_ready(2)
    sub = Subscription("s", alert_pb2.AlertFilter(), capacity=10)
    hub.register(sub)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(Unavailable, match="shutting down"):
        await sub.next()


async def test_the_hub_waits_out_a_store_outage() -> None:
    store = InMemoryAlertStore()
    store.available = False
    hub = AlertHub(store, max_subscribers=10, block_ms=50, retry_max_s=0.05)
    task = asyncio.create_task(hub.run())
    with pytest.raises(Unavailable):
        await hub.wait_ready(0.2)
    store.available = True
    await hub.wait_ready(2)
    sub = Subscription("s", alert_pb2.AlertFilter(), capacity=10)
    hub.register(sub)
    await publish(store, 1)
    assert (await asyncio.wait_for(sub.next(), 2)).alert_id == "a1"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
