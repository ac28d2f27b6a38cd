"""Fakes of the service's dependencies, for tests (unit and in-process gRPC) and tools.

``InMemoryStore`` follows the ``Store`` contract of ``RedisStore`` (the same contract tests run
against both); ``FakeAnalyzer`` answers canned faces per image; ``RecordingAuditSink`` keeps
what it was given.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from lfr.common.errors import InvalidArgument, LfrError, Unavailable
from lfr.inference import (
    CHIP_SIZE,
    EMBEDDING_DIM,
    DetectedFace,
    FaceDetection,
    FaceQuality,
    Float32Array,
    UInt8Array,
)
from lfr_watchlist.model import (
    ACTIVE,
    ENDED,
    AuditEvent,
    DeploymentRecord,
    EntryRecord,
    WatchlistRecord,
)
from lfr_watchlist.store import CameraClaimed, StaleState


def unit_vector(seed: int) -> Float32Array:
    """A reproducible random unit embedding."""
    vector = np.random.default_rng(seed).normal(size=EMBEDDING_DIM).astype(np.float32)
    result: Float32Array = vector / np.linalg.norm(vector)
    return result


def fake_face(embedding: Float32Array | int = 0, *, size_px: float = 200.0) -> DetectedFace:
    vector = unit_vector(embedding) if isinstance(embedding, int) else embedding
    return DetectedFace(
        box=(10.0, 10.0, 10.0 + size_px, 10.0 + size_px),
        landmarks=np.zeros((5, 2), np.float32),
        quality=FaceQuality(size_px=size_px, blur=500.0, yaw=0.0, detector_score=1.0),
        embedding=vector,
        chip=np.zeros((CHIP_SIZE, CHIP_SIZE, 3), np.uint8),
    )


class FakeAnalyzer:
    """``FaceAnalyzer`` answering from a table: image bytes -> faces, or an error to raise.
    Unknown bytes raise ``InvalidArgument(BAD_IMAGE)`` like an undecodable image."""

    def __init__(self, table: Mapping[bytes, Sequence[DetectedFace] | LfrError] | None = None):
        self.table: dict[bytes, Sequence[DetectedFace] | LfrError] = dict(table or {})
        self.is_ready = True
        self.calls = 0

    async def analyze(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[DetectedFace]:
        self.calls += 1
        if not self.is_ready:
            raise Unavailable("triton: fake analyzer is down")
        answer = self.table.get(bytes(image) if isinstance(image, bytes) else b"")
        if answer is None:
            raise InvalidArgument("cannot decode the image", reason="BAD_IMAGE")
        if isinstance(answer, LfrError):
            raise answer
        return list(answer)

    async def detect(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[FaceDetection]:
        return [
            FaceDetection(box=f.box, score=f.quality.detector_score, landmarks=f.landmarks)
            for f in await self.analyze(image, timeout_s=timeout_s)
        ]

    async def embed_chips(
        self, chips: UInt8Array, *, timeout_s: float | None = None
    ) -> Float32Array:
        return np.stack([unit_vector(i) for i in range(len(chips))]).astype(np.float32)

    async def ready(self) -> bool:
        return self.is_ready

    async def close(self) -> None:
        return None


@dataclass
class RecordingAuditSink:
    """``AuditSink`` keeping ``(action, actor, details)``; ``fail`` makes it refuse."""

    records: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    fail: bool = False

    async def record(self, action: str, actor: str, details: dict[str, str]) -> None:
        if self.fail:
            raise Unavailable(f"audit {action}: fake sink is down")
        self.records.append((action, actor, dict(details)))

    def actions(self) -> list[str]:
        return [action for action, _, _ in self.records]

    def of(self, action: str) -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.records if r[0] == action]


@dataclass
class _Entry:
    record: EntryRecord
    vectors: list[Float32Array]
    images: list[bytes]


class InMemoryStore:
    """The ``Store`` contract in process memory (no vector search: that is match's job)."""

    def __init__(self) -> None:
        self.watchlists: dict[str, WatchlistRecord] = {}
        self.entries: dict[str, dict[str, _Entry]] = {}
        self.deployments: dict[str, DeploymentRecord] = {}
        self.snapshots: dict[str, list[str]] = {}
        self.cameras: dict[str, str] = {}
        self.outbox: list[tuple[str, AuditEvent]] = []
        self.up = True
        self._seq = 0

    def state(self) -> dict[str, Any]:
        """Everything stored except the audit outbox: to compare before/after."""
        return copy.deepcopy(
            {
                "watchlists": self.watchlists,
                "entries": {
                    (wl, e): (x.record, [v.tobytes() for v in x.vectors], x.images)
                    for wl, d in self.entries.items()
                    for e, x in d.items()
                },
                "deployments": self.deployments,
                "cameras": self.cameras,
            }
        )

    def _check(self) -> None:
        if not self.up:
            raise Unavailable("redis: fake store is down")

    def _audit(self, events: Sequence[AuditEvent]) -> None:
        for event in events:
            self._seq += 1
            self.outbox.append((f"{self._seq}-0", event))

    async def ping(self) -> bool:
        self._check()
        return True

    async def close(self) -> None:
        return None

    async def create_watchlist(self, watchlist: WatchlistRecord, event: AuditEvent) -> bool:
        self._check()
        if watchlist.watchlist_id in self.watchlists:
            return False
        self.watchlists[watchlist.watchlist_id] = watchlist
        self.entries[watchlist.watchlist_id] = {}
        self._audit([event])
        return True

    async def get_watchlist(self, watchlist_id: str) -> WatchlistRecord | None:
        self._check()
        return self.watchlists.get(watchlist_id)

    async def list_watchlists(self) -> list[WatchlistRecord]:
        self._check()
        return sorted(self.watchlists.values(), key=lambda w: w.created_at)

    async def entry_counts(self, watchlist_ids: Sequence[str]) -> list[int]:
        self._check()
        return [len(self.entries.get(wl, {})) for wl in watchlist_ids]

    async def add_entry(
        self,
        entry: EntryRecord,
        embeddings: Sequence[Float32Array],
        images: Sequence[bytes],
        event: AuditEvent,
    ) -> None:
        self._check()
        self.entries.setdefault(entry.watchlist_id, {})[entry.entry_id] = _Entry(
            entry, [np.array(v, np.float32) for v in embeddings], list(images)
        )
        self._audit([event])

    async def get_entry(self, watchlist_id: str, entry_id: str) -> EntryRecord | None:
        self._check()
        found = self.entries.get(watchlist_id, {}).get(entry_id)
        return None if found is None else found.record

    async def list_entries(self, watchlist_id: str, *, after: str, limit: int) -> list[EntryRecord]:
        self._check()
        ids = sorted(e for e in self.entries.get(watchlist_id, {}) if e > after)[:limit]
        return [self.entries[watchlist_id][e].record for e in ids]

    async def live_entries(self, watchlist_id: str, now: datetime) -> list[tuple[str, str]]:
        self._check()
        return [
            (e, x.record.model_version)
            for e, x in self.entries.get(watchlist_id, {}).items()
            if x.record.governance.expires_at > now
        ]

    async def expired_entry_ids(self, watchlist_id: str, now: datetime) -> list[str]:
        self._check()
        return [
            e
            for e, x in self.entries.get(watchlist_id, {}).items()
            if x.record.governance.expires_at <= now
        ]

    async def remove_entry(self, watchlist_id: str, entry_id: str, event: AuditEvent) -> bool:
        self._check()
        if self.entries.get(watchlist_id, {}).pop(entry_id, None) is None:
            return False
        self._audit([event])
        return True

    async def create_deployment(
        self, deployment: DeploymentRecord, events: Sequence[AuditEvent]
    ) -> bool:
        self._check()
        if deployment.deployment_id in self.deployments:
            return False
        self.deployments[deployment.deployment_id] = deployment
        self._audit(events)
        return True

    async def get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        self._check()
        return self.deployments.get(deployment_id)

    async def list_deployments(self) -> list[DeploymentRecord]:
        self._check()
        return sorted(self.deployments.values(), key=lambda d: d.created_at)

    async def deployment_for_camera(self, camera_id: str) -> str | None:
        self._check()
        return self.cameras.get(camera_id)

    async def overdue_deployment_ids(self, now: datetime) -> list[str]:
        self._check()
        return [d.deployment_id for d in self.deployments.values() if d.overdue(now)]

    async def transition_deployment(
        self, new: DeploymentRecord, *, expected_state: int, events: Sequence[AuditEvent]
    ) -> None:
        self._check()
        dep_id = new.deployment_id
        current = self.deployments.get(dep_id)
        if current is None or current.state != expected_state:
            raise StaleState(dep_id, None if current is None else current.state)
        if new.state == ACTIVE:
            for camera in new.camera_ids:
                holder = self.cameras.get(camera)
                if holder is not None and holder != dep_id:
                    raise CameraClaimed(camera, holder)
            self.cameras.update(dict.fromkeys(new.camera_ids, dep_id))
            if new.snapshot is not None:
                # Like Redis: the ids are kept apart, not in the record read back.
                self.snapshots[dep_id] = list(new.snapshot.entry_ids)
                new = dataclasses.replace(
                    new, snapshot=dataclasses.replace(new.snapshot, entry_ids=())
                )
        elif new.state == ENDED:
            for camera in new.camera_ids:
                if self.cameras.get(camera) == dep_id:
                    del self.cameras[camera]
        self.deployments[dep_id] = new
        self._audit(events)

    async def pending_audit(self, limit: int) -> list[tuple[str, AuditEvent]]:
        self._check()
        return list(self.outbox[:limit])

    async def ack_audit(self, outbox_ids: Sequence[str]) -> None:
        self._check()
        gone = set(outbox_ids)
        self.outbox = [(i, e) for i, e in self.outbox if i not in gone]


async def eventually(check: Callable[[], bool], within_s: float = 1.0) -> None:
    """Let background tasks run until ``check()`` holds or ``within_s`` passes; the caller
    asserts afterwards (so a failure shows what was found)."""
    for _ in range(max(1, round(within_s / 0.02))):
        await asyncio.sleep(0.02)
        if check():
            return


class FakeClock:
    """A settable clock: ``clock()`` is now; ``advance`` moves it on."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


#: Images the default ``FakeAnalyzer`` of :func:`harness` knows (unknown bytes are BAD_IMAGE).
PORTRAIT = b"portrait"  #: one 200 px face (embedding seed 1)
OTHER_PORTRAIT = b"portrait-2"  #: one 200 px face (embedding seed 2)
GROUP = b"group"  #: two usable faces
SMALL_FACE = b"small-face"  #: one 40 px face
NO_FACE = b"landscape"  #: no face


@dataclass
class Harness:
    """The service's components over fakes, for unit and in-process gRPC tests."""

    settings: Any
    store: InMemoryStore
    analyzer: FakeAnalyzer
    sink: RecordingAuditSink
    clock: FakeClock
    components: Any  # lfr_watchlist.server.Components (imported lazily: no import cycle)


def harness(**settings: Any) -> Harness:
    from lfr_watchlist.server import Deps, make_components
    from lfr_watchlist.settings import WatchlistSettings

    store = InMemoryStore()
    analyzer = FakeAnalyzer(
        {
            PORTRAIT: [fake_face(1)],
            OTHER_PORTRAIT: [fake_face(2)],
            GROUP: [fake_face(3), fake_face(4, size_px=150)],
            SMALL_FACE: [fake_face(5, size_px=40)],
            NO_FACE: [],
        }
    )
    sink = RecordingAuditSink()
    clock = FakeClock()
    config = WatchlistSettings(**settings)
    components = make_components(config, Deps(store, analyzer, sink, clock))
    return Harness(config, store, analyzer, sink, clock, components)
