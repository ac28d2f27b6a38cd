"""The retention job against the in-memory store, on a fake clock."""

from __future__ import annotations

from lfr.v1 import alert_pb2
from lfr_alert.memory_store import InMemoryAlertStore
from lfr_alert.retention import RetentionJob
from lfr_alert.store import AuditEntry, NewAlert


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore(InMemoryAlertStore):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.compactions = 0
        self.compact_ok = True

    async def compact(self) -> bool:
        self.compactions += 1
        return self.compact_ok


async def raise_alert(store: InMemoryAlertStore, n: int, expires_s: float) -> str:
    pb = alert_pb2.Alert(alert_id=f"a{n}").SerializeToString()
    audit = AuditEntry(f"r{n}", "t", "alert.raised", {"alert_id": f"a{n}"})
    new = NewAlert(f"a{n}", f"e{n}", f"k{n}", 0, int(expires_s * 1000), pb, audit)
    return (await store.publish(new)).alert_id


async def test_expired_alerts_go_held_ones_stay_and_each_deletion_is_audited() -> None:
    clock = Clock()
    store = CountingStore(clock)
    job = RetentionJob(store, interval_s=1, batch=2, clock=clock, compact_interval_s=None)
    for n in range(5):
        await raise_alert(store, n, clock.now + 60)
    await raise_alert(store, 9, clock.now + 3600)
    await store.set_legal_hold("a2", True, AuditEntry("h", "dc", "alert.legal_hold"))
    assert await job.sweep() == 0  # nothing due yet
    clock.now += 61
    assert await job.sweep() == 4  # more than one batch
    assert await store.get("a2") is not None and await store.get("a9") is not None
    assert [await store.get(f"a{n}") for n in (0, 1, 3, 4)] == [None] * 4
    deleted = [r for r in store.audit_records if r.action == "alert.deleted"]
    assert sorted(r.details["alert_id"] for r in deleted) == ["a0", "a1", "a3", "a4"]
    assert all(r.actor == "lfr-alert/retention" for r in deleted)
    assert await job.sweep() == 0
    # Released from hold after its retention passed: deleted at the next sweep.
    await store.set_legal_hold("a2", False, AuditEntry("h2", "dc", "alert.legal_hold"))
    assert await job.sweep() == 1


async def test_deletions_ask_for_a_rate_limited_compaction_until_one_starts() -> None:
    clock = Clock()
    store = CountingStore(clock)
    job = RetentionJob(store, interval_s=1, clock=clock, compact_interval_s=3600)
    await job.sweep()
    assert store.compactions == 0  # nothing deleted, nothing to compact
    await raise_alert(store, 1, clock.now - 1)
    store.compact_ok = False  # e.g. a rewrite is already running
    await job.sweep()
    assert store.compactions == 1
    store.compact_ok = True
    await job.sweep()  # still pending: asks again
    assert store.compactions == 2
    await raise_alert(store, 2, clock.now - 1)
    await job.sweep()  # deleted again, but one compaction per interval
    assert store.compactions == 2
