"""The alert store on Redis: the only module of the alert service importing ``redis``.

Keys (prefix ``lfr:alert:`` / ``lfr:audit:``)::

    lfr:alert:stream            Stream; one entry per alert: {alert_id}. Entry id = cursor.
    lfr:alert:a:<alert_id>      Hash; the alert (``alerts.F_*`` fields; ``pb`` holds the crop).
    lfr:alert:a:<id>:events     Set; event ids folded into the alert (deleted with it).
    lfr:alert:event:<event_id>  String "n:<alert_id>" (raised it) | "d:<alert_id>" (joined it).
    lfr:alert:cool:<dedup_key>  String alert_id, expiring after the cool-down.
    lfr:alert:expiry            Sorted set alert_id -> expires_ms (alerts not under legal hold).
    lfr:alert:sub:<subscriber>  Hash; last acked cursor of a subscriber.
    lfr:audit:log               Stream; one entry per audit record (id ms = record time).
    lfr:audit:head              Hash; seq, hash, ms of the last record.
    lfr:audit:idem:<key>        String; log position of an AppendAudit with that idempotency key.

The crop exists only inside the alert hash, so deleting the alert deletes it. Every change is
one Lua script (``lua.py``); Redis runs with AOF ``appendfsync always``, so a script's reply means
its effects are on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lfr.common.errors import LfrError, NotFound, Unavailable
from lfr.v1 import alert_pb2
from lfr_alert import lua
from lfr_alert.alerts import ORIGIN, assemble, ms_timestamp, timestamp_ms
from lfr_alert.store import (
    AlreadyAdjudicated,
    AuditEntries,
    AuditEntry,
    Batch,
    NewAlert,
    PublishOutcome,
)

PREFIX = "lfr:alert:"
STREAM_KEY = PREFIX + "stream"
ALERT_PREFIX = PREFIX + "a:"
EVENT_PREFIX = PREFIX + "event:"
COOL_PREFIX = PREFIX + "cool:"
EXPIRY_KEY = PREFIX + "expiry"
SUB_PREFIX = PREFIX + "sub:"
AUDIT_STREAM_KEY = "lfr:audit:log"
AUDIT_HEAD_KEY = "lfr:audit:head"
AUDIT_IDEMPOTENCY_PREFIX = "lfr:audit:idem:"
#: How long a repeated AppendAudit is recognised (senders retry within minutes, not weeks).
AUDIT_IDEMPOTENCY_TTL_S = 7 * 24 * 3600


def alert_key(alert_id: str) -> str:
    return ALERT_PREFIX + alert_id


def events_key(alert_id: str) -> str:
    return ALERT_PREFIX + alert_id + ":events"


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(flat: Sequence[Any]) -> dict[str, bytes]:
    return {_s(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _audit_args(entry: AuditEntry) -> list[str]:
    args = [entry.record_id, entry.actor, entry.action]
    for key in sorted(entry.details):
        args += [key, entry.details[key]]
    return args


def _audit_record(fields: Mapping[Any, Any]) -> alert_pb2.AuditRecord:
    f = {_s(k): _s(v) for k, v in fields.items()}
    ms = int(f.get("ms", "0"))
    return alert_pb2.AuditRecord(
        seq=int(f.get("seq", "0")),
        record_id=f.get("id", ""),
        time=ms_timestamp(ms),
        actor=f.get("actor", ""),
        action=f.get("action", ""),
        details={k[2:]: v for k, v in f.items() if k.startswith("d.")},
        prev_hash=f.get("prev", ""),
        hash=f.get("hash", ""),
    )


def _unavailable(exc: RedisError) -> LfrError:
    return Unavailable(f"alert store (Redis) unavailable: {type(exc).__name__}: {exc}")


class RedisAlertStore:
    """:class:`lfr_alert.store.AlertStore` on Redis (Streams, hashes and Lua scripts)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0, max_block_ms: int = 1000) -> None:
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)
        common: dict[str, Any] = {
            "socket_connect_timeout": timeout_s,
            "retry": retry,
            "retry_on_error": [RedisConnectionError, RedisTimeoutError],
            "health_check_interval": 10,
        }
        self._redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s, **common)
        # XREAD BLOCK holds its connection for up to max_block_ms: its own client and timeout.
        self._blocking = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s + max_block_ms / 1000, **common
        )
        self._publish = self._redis.register_script(lua.PUBLISH)
        self._adjudicate = self._redis.register_script(lua.ADJUDICATE)
        self._legal_hold = self._redis.register_script(lua.LEGAL_HOLD)
        self._delete = self._redis.register_script(lua.DELETE_EXPIRED)
        self._append = self._redis.register_script(lua.APPEND_AUDIT)
        self._ack = self._redis.register_script(lua.ACK)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()
        await self._blocking.aclose()

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from None

    # --- alerts ---------------------------------------------------------------------------

    async def publish(self, alert: NewAlert) -> PublishOutcome:
        keys = [
            EVENT_PREFIX + alert.event_id,
            COOL_PREFIX + alert.dedup_key,
            STREAM_KEY,
            alert_key(alert.alert_id),
            EXPIRY_KEY,
            events_key(alert.alert_id),
            AUDIT_STREAM_KEY,
            AUDIT_HEAD_KEY,
        ]
        args: list[Any] = [
            alert.event_id,
            alert.alert_id,
            alert.pb,
            alert.cooldown_ms,
            alert.expires_ms,
            ALERT_PREFIX,
            *_audit_args(alert.audit),
        ]
        reply = await self._call(self._publish(keys=keys, args=args))
        kind = _s(reply[0])
        if kind == "replay":
            return PublishOutcome(_s(reply[1]), replayed=True, deduplicated=_s(reply[2]) == "d")
        if kind == "dedup":
            return PublishOutcome(_s(reply[1]), deduplicated=True)
        return PublishOutcome(_s(reply[1]), cursor=_s(reply[2]))

    async def get(self, alert_id: str) -> alert_pb2.Alert | None:
        fields = await self._call(self._redis.hgetall(alert_key(alert_id)))
        return assemble({_s(k): v for k, v in fields.items()}) if fields else None

    async def adjudicate(
        self,
        alert_id: str,
        adjudication: alert_pb2.Adjudication,
        new_state: int,
        audit: AuditEntry,
    ) -> alert_pb2.Alert:
        args: list[Any] = [
            new_state,
            adjudication.officer_id,
            int(adjudication.decision),
            adjudication.reason,
            timestamp_ms(adjudication.decided_at),
            *_audit_args(audit),
        ]
        reply = await self._call(
            self._adjudicate(
                keys=[alert_key(alert_id), AUDIT_STREAM_KEY, AUDIT_HEAD_KEY], args=args
            )
        )
        kind = _s(reply[0])
        if kind == "missing":
            raise NotFound(f"alert {alert_id} not found (never raised, or deleted by retention)")
        alert = assemble(_pairs(reply[1]))
        if kind == "decided":
            raise AlreadyAdjudicated(alert)
        return alert

    async def set_legal_hold(
        self, alert_id: str, hold: bool, audit: AuditEntry
    ) -> tuple[alert_pb2.Alert, bool]:
        keys = [alert_key(alert_id), EXPIRY_KEY, AUDIT_STREAM_KEY, AUDIT_HEAD_KEY]
        args = [alert_id, "1" if hold else "0", *_audit_args(audit)]
        reply = await self._call(self._legal_hold(keys=keys, args=args))
        kind = _s(reply[0])
        if kind == "missing":
            raise NotFound(f"alert {alert_id} not found (never raised, or deleted by retention)")
        return assemble(_pairs(reply[1])), kind == "ok"

    async def ack(self, subscriber_id: str, alert_id: str, now_ms: int) -> str | None:
        reply = await self._call(
            self._ack(
                keys=[alert_key(alert_id), SUB_PREFIX + subscriber_id], args=[alert_id, now_ms]
            )
        )
        return None if reply is None else _s(reply)

    async def acked_cursor(self, subscriber_id: str) -> str:
        value = await self._call(self._redis.hget(SUB_PREFIX + subscriber_id, "cursor"))
        return "" if value is None else _s(value)

    # --- the alert stream -----------------------------------------------------------------

    async def last_cursor(self) -> str:
        entries = await self._call(self._redis.xrevrange(STREAM_KEY, "+", "-", count=1))
        return _s(entries[0][0]) if entries else ORIGIN

    async def _load(self, entries: Sequence[Any]) -> list[alert_pb2.Alert]:
        if not entries:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for _entry_id, fields in entries:
            pipe.hgetall(alert_key(_s(fields[b"alert_id"])))
        results = await self._call(pipe.execute())
        return [assemble({_s(k): v for k, v in r.items()}) for r in results if r]

    async def read_after(self, cursor: str, count: int, *, until: str = "") -> Batch:
        entries = await self._call(
            self._redis.xrange(STREAM_KEY, f"({cursor}", until or "+", count=count)
        )
        last = _s(entries[-1][0]) if entries else cursor
        return Batch(last, await self._load(entries), exhausted=len(entries) < count)

    async def wait_after(self, cursor: str, count: int, block_ms: int) -> Batch:
        try:
            reply: Any = await self._blocking.xread(
                {STREAM_KEY: cursor}, count=count, block=block_ms
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from None
        entries = reply[0][1] if reply else []
        last = _s(entries[-1][0]) if entries else cursor
        return Batch(last, await self._load(entries), exhausted=len(entries) < count)

    async def read_before(self, cursor: str, count: int) -> Batch:
        end = f"({cursor}" if cursor else "+"
        entries = await self._call(self._redis.xrevrange(STREAM_KEY, end, "-", count=count))
        last = _s(entries[-1][0]) if entries else cursor
        return Batch(last, await self._load(entries), exhausted=len(entries) < count)

    # --- retention ------------------------------------------------------------------------

    async def expired(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        rows = await self._call(
            self._redis.zrangebyscore(
                EXPIRY_KEY, "-inf", now_ms, start=0, num=limit, withscores=True
            )
        )
        return [(_s(member), int(score)) for member, score in rows]

    async def delete_expired(self, alert_id: str, now_ms: int, audit: AuditEntry) -> bool:
        keys = [
            alert_key(alert_id),
            events_key(alert_id),
            STREAM_KEY,
            EXPIRY_KEY,
            AUDIT_STREAM_KEY,
            AUDIT_HEAD_KEY,
        ]
        args: list[Any] = [alert_id, now_ms, EVENT_PREFIX, *_audit_args(audit)]
        return bool(await self._call(self._delete(keys=keys, args=args)))

    async def compact(self) -> bool:
        info = await self._call(self._redis.info("persistence"))
        if not info.get("aof_enabled"):
            return True  # no append-only file to compact
        if info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled"):
            return False  # it may have forked before the deletion: ask again later
        try:
            await self._call(self._redis.bgrewriteaof())
        except ResponseError:
            return False
        return True

    # --- the audit log --------------------------------------------------------------------

    async def append_audit(
        self, entry: AuditEntry, idempotency_key: str = ""
    ) -> alert_pb2.AuditRecord:
        keys = [AUDIT_STREAM_KEY, AUDIT_HEAD_KEY, AUDIT_IDEMPOTENCY_PREFIX + idempotency_key]
        args: list[Any] = [
            "1" if idempotency_key else "0",
            AUDIT_IDEMPOTENCY_TTL_S,
            *_audit_args(entry),
        ]
        try:
            reply = await self._call(self._append(keys=keys, args=args))
        except ResponseError as exc:  # the chain head is missing: refuse to fork the chain
            raise LfrError(f"audit log: {exc}", reason="AUDIT_CHAIN_BROKEN") from None
        if _s(reply[0]) == "dup":
            return _audit_record(_pairs(reply[1]))
        _kind, seq, ms, prev, digest = reply
        return alert_pb2.AuditRecord(
            seq=int(seq),
            record_id=entry.record_id,
            time=ms_timestamp(int(ms)),
            actor=entry.actor,
            action=entry.action,
            details=dict(entry.details),
            prev_hash=_s(prev),
            hash=_s(digest),
        )

    async def read_audit(
        self, position: str, count: int, *, since_ms: int = 0, until_ms: int = 0
    ) -> AuditEntries:
        start = f"({position}" if position else "-"
        if since_ms and (not position or int(position.split("-")[0]) < since_ms):
            start = str(since_ms)
        end = str(until_ms) if until_ms else "+"
        entries = await self._call(self._redis.xrange(AUDIT_STREAM_KEY, start, end, count=count))
        return [(_s(entry_id), _audit_record(fields)) for entry_id, fields in entries]

    async def audit_head(self) -> tuple[int, str] | None:
        seq, digest = await self._call(self._redis.hmget(AUDIT_HEAD_KEY, ["seq", "hash"]))
        if seq is None:
            return None
        return int(seq), _s(digest)
