"""The Redis store (redis.asyncio): the only module of the service that imports ``redis``.

Layout (``lfr.common.schema`` names what match reads; the rest is private to this service):

* ``lfr:wls`` zset of watch-list ids by creation time; ``lfr:wl:<wl>`` hash, its metadata.
* ``lfr:idx:wl:<wl>`` RediSearch index over ``lfr:wl:<wl>:entry:`` — one hash per enrolment
  vector, ``lfr:wl:<wl>:entry:<entry>:<n>`` (the vector index contract).
* ``lfr:wl:<wl>:meta:<entry>`` entry metadata (governance), outside the indexed prefix;
  ``lfr:wl:<wl>:entries`` (zset, ids in lexical = enrolment order, for paging) and
  ``lfr:wl:<wl>:expiry`` (zset scored by ``expires_at``, for the purge);
  ``lfr:wl:<wl>:image:<entry>:<n>`` enrolment photos, only when the watch list keeps them.
* ``lfr:dep:<dep>`` deployment hash, ``lfr:dep:<dep>:snapshot`` the entry ids it started with,
  ``lfr:deps`` (zset by creation), ``lfr:deps:open`` (zset of not-ended ones by end time),
  ``lfr:cameras`` hash camera id -> the active deployment holding it (O(1) resolve).
* ``lfr:watchlist:audit-outbox`` stream of audit events not yet delivered.

Every change is one MULTI/EXEC transaction (with WATCH where it reads first) that also appends
its audit events to the outbox, so Redis' AOF holds a change and its audit record together.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, cast

import numpy as np
import redis.asyncio as aredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lfr.common.errors import Unavailable
from lfr.common.logging import get_logger
from lfr.common.schema import (
    EMBEDDING_DIM,
    EMBEDDING_FIELD,
    KEY_ROOT,
    deployment_key,
    entry_key,
    entry_prefix,
    index_name,
    watchlist_key,
)
from lfr.inference import Float32Array
from lfr_watchlist.model import (
    ACTIVE,
    ENDED,
    AuditEvent,
    DeploymentRecord,
    EntryRecord,
    Governance,
    Snapshot,
    WatchlistRecord,
)
from lfr_watchlist.store import CameraClaimed, StaleState

log = get_logger("lfr.watchlist.redis")

WATCHLISTS_KEY = f"{KEY_ROOT}:wls"
DEPLOYMENTS_KEY = f"{KEY_ROOT}:deps"
OPEN_DEPLOYMENTS_KEY = f"{KEY_ROOT}:deps:open"
CAMERAS_KEY = f"{KEY_ROOT}:cameras"
OUTBOX_KEY = f"{KEY_ROOT}:watchlist:audit-outbox"
#: HNSW build parameters (RediSearch defaults, written out so the index is reproducible).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
_MAX_TX_ATTEMPTS = 20


def entries_key(watchlist_id: str) -> str:
    return f"{watchlist_key(watchlist_id)}:entries"


def expiry_key(watchlist_id: str) -> str:
    return f"{watchlist_key(watchlist_id)}:expiry"


def meta_key(watchlist_id: str, entry_id: str) -> str:
    return f"{watchlist_key(watchlist_id)}:meta:{entry_id}"


def vector_key(watchlist_id: str, entry_id: str, n: int) -> str:
    return entry_key(watchlist_id, f"{entry_id}:{n}")


def image_key(watchlist_id: str, entry_id: str, n: int) -> str:
    return f"{watchlist_key(watchlist_id)}:image:{entry_id}:{n}"


def snapshot_key(deployment_id: str) -> str:
    return f"{deployment_key(deployment_id)}:snapshot"


def ft_create_args(watchlist_id: str, algorithm: str) -> list[str | int]:
    """``FT.CREATE`` per the vector index contract (lfr.common.schema)."""
    params: list[str | int] = ["TYPE", "FLOAT32", "DIM", EMBEDDING_DIM, "DISTANCE_METRIC", "COSINE"]
    if algorithm == "HNSW":
        params += ["M", HNSW_M, "EF_CONSTRUCTION", HNSW_EF_CONSTRUCTION]
    return [
        "FT.CREATE", index_name(watchlist_id), "ON", "HASH",
        "PREFIX", 1, entry_prefix(watchlist_id),
        "SCHEMA",
        EMBEDDING_FIELD, "VECTOR", algorithm, len(params), *params,
        "entry_id", "TAG",
        "expires_at", "NUMERIC",
        "category", "NUMERIC",
    ]  # fmt: skip


# --- encoding ----------------------------------------------------------------------------------


def _us(value: datetime) -> str:
    """Microseconds since the epoch: exact, unlike a float of seconds."""
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return str((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _from_us(raw: str) -> datetime:
    micros = int(raw)
    seconds, rest = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest)


def _opt_us(value: datetime | None) -> str:
    return "" if value is None else _us(value)


def _opt_from_us(raw: str) -> datetime | None:
    return None if not raw else _from_us(raw)


def _s(raw: object) -> str:
    """A reply item as text (redis-py types its replies loosely)."""
    if raw is None:
        return ""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _texts(raw: object) -> list[str]:
    return [_s(item) for item in cast(Iterable[object], raw or [])]


def _fields(raw: object) -> dict[str, str]:
    """A HGETALL reply as text (never used on the embedding field)."""
    return {_s(k): _s(v) for k, v in cast(dict[object, object], raw or {}).items()}


def _watchlist_hash(wl: WatchlistRecord) -> dict[str, str]:
    return {
        "watchlist_id": wl.watchlist_id,
        "name": wl.name,
        "description": wl.description,
        "algorithm": wl.algorithm,
        "keep_enrolment_images": "1" if wl.keep_enrolment_images else "0",
        "created_at": _us(wl.created_at),
        "created_by": wl.created_by,
    }


def _watchlist_from(h: dict[str, str]) -> WatchlistRecord:
    return WatchlistRecord(
        watchlist_id=h.get("watchlist_id", ""),
        name=h.get("name", ""),
        description=h.get("description", ""),
        algorithm=h.get("algorithm", ""),
        keep_enrolment_images=h.get("keep_enrolment_images") == "1",
        created_at=_from_us(h["created_at"]),
        created_by=h.get("created_by", ""),
    )


def _entry_hash(entry: EntryRecord) -> dict[str, str]:
    g = entry.governance
    return {
        "entry_id": entry.entry_id,
        "watchlist_id": entry.watchlist_id,
        "image_count": str(entry.image_count),
        "enrolled_at": _us(entry.enrolled_at),
        "model_version": entry.model_version,
        "category": str(g.category),
        "legal_basis_ref": g.legal_basis_ref,
        "image_source": g.image_source,
        "image_date": _opt_us(g.image_date),
        "approver": g.approver,
        "expires_at": _us(g.expires_at),
        "subject_ref": g.subject_ref,
    }


def _entry_from(h: dict[str, str]) -> EntryRecord:
    return EntryRecord(
        entry_id=h.get("entry_id", ""),
        watchlist_id=h.get("watchlist_id", ""),
        image_count=int(h["image_count"]),
        enrolled_at=_from_us(h["enrolled_at"]),
        model_version=h.get("model_version", ""),
        governance=Governance(
            category=int(h["category"]),
            legal_basis_ref=h.get("legal_basis_ref", ""),
            image_source=h.get("image_source", ""),
            image_date=_opt_from_us(h.get("image_date", "")),
            approver=h.get("approver", ""),
            expires_at=_from_us(h["expires_at"]),
            subject_ref=h.get("subject_ref", ""),
        ),
    )


def _deployment_hash(d: DeploymentRecord) -> dict[str, str]:
    snap = d.snapshot
    return {
        "deployment_id": d.deployment_id,
        "authorising_officer": d.authorising_officer,
        "purpose": d.purpose,
        "location": d.location,
        "camera_ids": json.dumps(list(d.camera_ids)),
        "watchlist_id": d.watchlist_id,
        "threshold": repr(d.threshold),
        "start_time": _us(d.start_time),
        "end_time": _us(d.end_time),
        "state": str(d.state),
        "created_at": _us(d.created_at),
        "started_at": _opt_us(d.started_at),
        "ended_at": _opt_us(d.ended_at),
        "snapshot_entry_count": "" if snap is None else str(snap.entry_count),
        "snapshot_content_hash": "" if snap is None else snap.content_hash,
        "snapshot_taken_at": "" if snap is None else _us(snap.taken_at),
    }


def _deployment_from(h: dict[str, str]) -> DeploymentRecord:
    snapshot = None
    if h.get("snapshot_taken_at", ""):
        snapshot = Snapshot(
            entry_count=int(h["snapshot_entry_count"]),
            content_hash=h.get("snapshot_content_hash", ""),
            taken_at=_from_us(h["snapshot_taken_at"]),
        )
    return DeploymentRecord(
        deployment_id=h.get("deployment_id", ""),
        authorising_officer=h.get("authorising_officer", ""),
        purpose=h.get("purpose", ""),
        location=h.get("location", ""),
        camera_ids=tuple(json.loads(h["camera_ids"])),
        watchlist_id=h.get("watchlist_id", ""),
        threshold=float(h["threshold"]),
        start_time=_from_us(h["start_time"]),
        end_time=_from_us(h["end_time"]),
        state=int(h["state"]),
        created_at=_from_us(h["created_at"]),
        started_at=_opt_from_us(h.get("started_at", "")),
        ended_at=_opt_from_us(h.get("ended_at", "")),
        snapshot=snapshot,
    )


def _queue_audit(pipe: Pipeline, events: Sequence[AuditEvent]) -> None:
    for event in events:
        pipe.xadd(
            OUTBOX_KEY,
            {"action": event.action, "actor": event.actor, "details": json.dumps(event.details)},
        )


# --- errors ------------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def _unavailable_on_disconnect(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Redis unreachable or too slow -> ``Unavailable`` (the caller may retry)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise Unavailable(f"redis: {exc}") from None

    return wrapper


class RedisStore:
    """:class:`lfr_watchlist.store.Store` on Redis 8 with RediSearch."""

    def __init__(self, client: aredis.Redis) -> None:
        self._r = client
        self._search_checked = False

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 5.0) -> RedisStore:
        client = aredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # A restarted Redis drops every connection: reconnect and retry a few times
            # before the caller sees Unavailable.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=4),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return cls(client)

    @property
    def client(self) -> aredis.Redis:
        return self._r

    async def ping(self) -> bool:
        await self._r.ping()
        if not self._search_checked:
            # A Redis without the search module would fail every enrolment: report it as down.
            modules = await self._r.module_list()
            names = {_fields(module).get("name", "") for module in modules}
            if "search" not in names:
                log.error("redis has no search module", modules=sorted(names))
                return False
            self._search_checked = True
        return True

    async def close(self) -> None:
        await self._r.aclose()

    # --- watch lists ---------------------------------------------------------------------------

    @_unavailable_on_disconnect
    async def create_watchlist(self, watchlist: WatchlistRecord, event: AuditEvent) -> bool:
        wl_id = watchlist.watchlist_id
        key = watchlist_key(wl_id)
        async with self._r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if await pipe.exists(key):
                    return False
                if await self._index_exists(pipe, index_name(wl_id)):
                    # An index without its watch list (e.g. metadata deleted by hand): rebuild it.
                    await pipe.execute_command("FT.DROPINDEX", index_name(wl_id))
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.execute_command(*ft_create_args(wl_id, watchlist.algorithm))
                pipe.hset(key, mapping=_watchlist_hash(watchlist))  # type: ignore[arg-type]
                pipe.zadd(WATCHLISTS_KEY, {wl_id: int(_us(watchlist.created_at))})
                _queue_audit(pipe, [event])
                await pipe.execute()
            except WatchError:
                return False  # created concurrently by someone else
        return True

    @staticmethod
    async def _index_exists(pipe: Pipeline, name: str) -> bool:
        try:
            await pipe.execute_command("FT.INFO", name)
        except ResponseError:
            return False
        return True

    @_unavailable_on_disconnect
    async def get_watchlist(self, watchlist_id: str) -> WatchlistRecord | None:
        h = _fields(await self._r.hgetall(watchlist_key(watchlist_id)))
        return _watchlist_from(h) if h else None

    @_unavailable_on_disconnect
    async def list_watchlists(self) -> list[WatchlistRecord]:
        ids = _texts(await self._r.zrange(WATCHLISTS_KEY, 0, -1))
        pipe = self._r.pipeline(transaction=False)
        for wl_id in ids:
            pipe.hgetall(watchlist_key(wl_id))
        return [_watchlist_from(h) for h in map(_fields, await pipe.execute()) if h]

    @_unavailable_on_disconnect
    async def entry_counts(self, watchlist_ids: Sequence[str]) -> list[int]:
        pipe = self._r.pipeline(transaction=False)
        for wl_id in watchlist_ids:
            pipe.zcard(entries_key(wl_id))
        return [int(n) for n in await pipe.execute()]

    # --- entries -------------------------------------------------------------------------------

    @_unavailable_on_disconnect
    async def add_entry(
        self,
        entry: EntryRecord,
        embeddings: Sequence[Float32Array],
        images: Sequence[bytes],
        event: AuditEvent,
    ) -> None:
        wl_id, entry_id, g = entry.watchlist_id, entry.entry_id, entry.governance
        expires_s = g.expires_at.timestamp()
        pipe = self._r.pipeline(transaction=True)
        for n, embedding in enumerate(embeddings):
            vector = np.ascontiguousarray(embedding, dtype="<f4")
            pipe.hset(
                vector_key(wl_id, entry_id, n),
                mapping={
                    EMBEDDING_FIELD: vector.tobytes(),
                    "entry_id": entry_id,
                    "expires_at": repr(expires_s),
                    "category": str(g.category),
                    "subject_ref": g.subject_ref,
                    "model_version": entry.model_version,
                },
            )
        for n, image in enumerate(images):
            pipe.set(image_key(wl_id, entry_id, n), image)
        pipe.hset(meta_key(wl_id, entry_id), mapping=_entry_hash(entry))  # type: ignore[arg-type]
        pipe.zadd(entries_key(wl_id), {entry_id: 0})
        pipe.zadd(expiry_key(wl_id), {entry_id: expires_s})
        _queue_audit(pipe, [event])
        await pipe.execute()

    @_unavailable_on_disconnect
    async def get_entry(self, watchlist_id: str, entry_id: str) -> EntryRecord | None:
        h = _fields(await self._r.hgetall(meta_key(watchlist_id, entry_id)))
        return _entry_from(h) if h else None

    @_unavailable_on_disconnect
    async def list_entries(self, watchlist_id: str, *, after: str, limit: int) -> list[EntryRecord]:
        start = f"({after}" if after else "-"
        ids = _texts(
            await self._r.zrange(
                entries_key(watchlist_id), start, "+", bylex=True, offset=0, num=limit
            )
        )
        pipe = self._r.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hgetall(meta_key(watchlist_id, entry_id))
        return [_entry_from(h) for h in map(_fields, await pipe.execute()) if h]

    @_unavailable_on_disconnect
    async def live_entries(self, watchlist_id: str, now: datetime) -> list[tuple[str, str]]:
        ids = _texts(
            await self._r.zrange(
                expiry_key(watchlist_id), f"({now.timestamp()!r}", "+inf", byscore=True
            )
        )
        pipe = self._r.pipeline(transaction=False)
        for entry_id in ids:
            pipe.hget(meta_key(watchlist_id, entry_id), "model_version")
        versions = await pipe.execute()
        return [(e, _s(v)) for e, v in zip(ids, versions, strict=True) if v is not None]

    @_unavailable_on_disconnect
    async def expired_entry_ids(self, watchlist_id: str, now: datetime) -> list[str]:
        return _texts(
            await self._r.zrange(
                expiry_key(watchlist_id), "-inf", repr(now.timestamp()), byscore=True
            )
        )

    @_unavailable_on_disconnect
    async def remove_entry(self, watchlist_id: str, entry_id: str, event: AuditEvent) -> bool:
        meta = meta_key(watchlist_id, entry_id)
        for _ in range(_MAX_TX_ATTEMPTS):
            async with self._r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(meta)
                    raw_count = await pipe.hget(meta, "image_count")
                    if raw_count is None:
                        return False
                    count = int(raw_count)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.delete(
                        meta,
                        *(vector_key(watchlist_id, entry_id, n) for n in range(count)),
                        *(image_key(watchlist_id, entry_id, n) for n in range(count)),
                    )
                    pipe.zrem(entries_key(watchlist_id), entry_id)
                    pipe.zrem(expiry_key(watchlist_id), entry_id)
                    _queue_audit(pipe, [event])
                    await pipe.execute()
                    return True
                except WatchError:
                    continue
        raise Unavailable(f"entry {entry_id} kept changing while being removed; retry")

    # --- deployments ---------------------------------------------------------------------------

    @_unavailable_on_disconnect
    async def create_deployment(
        self, deployment: DeploymentRecord, events: Sequence[AuditEvent]
    ) -> bool:
        dep_id = deployment.deployment_id
        key = deployment_key(dep_id)
        async with self._r.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                if await pipe.exists(key):
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(key, mapping=_deployment_hash(deployment))  # type: ignore[arg-type]
                pipe.zadd(DEPLOYMENTS_KEY, {dep_id: int(_us(deployment.created_at))})
                pipe.zadd(OPEN_DEPLOYMENTS_KEY, {dep_id: deployment.end_time.timestamp()})
                _queue_audit(pipe, events)
                await pipe.execute()
            except WatchError:
                return False
        return True

    @_unavailable_on_disconnect
    async def get_deployment(self, deployment_id: str) -> DeploymentRecord | None:
        h = _fields(await self._r.hgetall(deployment_key(deployment_id)))
        return _deployment_from(h) if h else None

    @_unavailable_on_disconnect
    async def list_deployments(self) -> list[DeploymentRecord]:
        ids = _texts(await self._r.zrange(DEPLOYMENTS_KEY, 0, -1))
        pipe = self._r.pipeline(transaction=False)
        for dep_id in ids:
            pipe.hgetall(deployment_key(dep_id))
        return [_deployment_from(h) for h in map(_fields, await pipe.execute()) if h]

    @_unavailable_on_disconnect
    async def deployment_for_camera(self, camera_id: str) -> str | None:
        raw = await self._r.hget(CAMERAS_KEY, camera_id)
        return None if raw is None else _s(raw)

    @_unavailable_on_disconnect
    async def overdue_deployment_ids(self, now: datetime) -> list[str]:
        return _texts(
            await self._r.zrange(OPEN_DEPLOYMENTS_KEY, "-inf", repr(now.timestamp()), byscore=True)
        )

    @_unavailable_on_disconnect
    async def transition_deployment(
        self, new: DeploymentRecord, *, expected_state: int, events: Sequence[AuditEvent]
    ) -> None:
        dep_id = new.deployment_id
        key = deployment_key(dep_id)
        cameras = list(new.camera_ids)
        for _ in range(_MAX_TX_ATTEMPTS):
            async with self._r.pipeline(transaction=True) as pipe:
                try:
                    # Watching the camera map makes claiming all cameras one atomic step.
                    await pipe.watch(key, CAMERAS_KEY)
                    raw_state = await pipe.hget(key, "state")
                    state = None if raw_state is None else int(raw_state)
                    if state != expected_state:
                        raise StaleState(dep_id, state)
                    holders = [_s(h) for h in await pipe.hmget(CAMERAS_KEY, cameras)]
                    if new.state == ACTIVE:
                        for camera, holder in zip(cameras, holders, strict=True):
                            if holder and holder != dep_id:
                                raise CameraClaimed(camera, holder)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, mapping=_deployment_hash(new))  # type: ignore[arg-type]
                    if new.state == ACTIVE:
                        pipe.hset(CAMERAS_KEY, mapping=dict.fromkeys(cameras, dep_id))
                        if new.snapshot is not None:
                            pipe.delete(snapshot_key(dep_id))
                            if new.snapshot.entry_ids:
                                pipe.rpush(snapshot_key(dep_id), *new.snapshot.entry_ids)
                    elif new.state == ENDED:
                        mine = [c for c, h in zip(cameras, holders, strict=True) if h == dep_id]
                        if mine:
                            pipe.hdel(CAMERAS_KEY, *mine)
                        pipe.zrem(OPEN_DEPLOYMENTS_KEY, dep_id)
                    _queue_audit(pipe, events)
                    await pipe.execute()
                    return
                except WatchError:
                    continue
        raise Unavailable(f"deployment {dep_id} kept changing during its transition; retry")

    async def snapshot_entry_ids(self, deployment_id: str) -> list[str]:
        """The entry ids the deployment started with (for auditors; not in the Protocol)."""
        return _texts(await self._r.lrange(snapshot_key(deployment_id), 0, -1))

    # --- audit outbox --------------------------------------------------------------------------

    @_unavailable_on_disconnect
    async def pending_audit(self, limit: int) -> list[tuple[str, AuditEvent]]:
        rows = await self._r.xrange(OUTBOX_KEY, "-", "+", count=limit)
        out: list[tuple[str, AuditEvent]] = []
        for raw_id, raw_fields in rows or []:
            fields = _fields(raw_fields)
            details: dict[str, Any] = json.loads(fields.get("details") or "{}")
            event = AuditEvent(
                action=fields.get("action", ""),
                actor=fields.get("actor", ""),
                details={str(k): str(v) for k, v in details.items()},
            )
            out.append((_s(raw_id), event))
        return out

    @_unavailable_on_disconnect
    async def ack_audit(self, outbox_ids: Sequence[str]) -> None:
        if outbox_ids:
            await self._r.xdel(OUTBOX_KEY, *outbox_ids)
