"""KNN queries against a watch list's RediSearch index, and the guard that keeps Redis from
retaining them. The only module of the match service that imports ``redis``.

Why a guard: a KNN query carries the probe vector as a command argument. FT.SEARCH is read-only
(no key, no AOF record, nothing replicated), but Redis keeps the arguments of slow commands in
SLOWLOG, streams every command to MONITOR clients, and prints the current command's arguments in
a crash report. So before any query is sent on a connection, that connection checks (and, when
allowed, sets) ``slowlog-log-slower-than -1`` and ``hide-user-data-from-log yes``; a health
probe re-checks every few seconds, refuses to serve while a MONITOR client is attached, and
scrubs SLOWLOG of vector queries if someone turned it back on in between. Redis' latency
monitor and INFO commandstats keep command names and timings only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lfr.common import schema
from lfr.common.errors import DeadlineExceeded, FailedPrecondition, LfrError, Unavailable
from lfr.common.logging import get_logger
from lfr.common.scores import score_from_cosine_distance
from lfr_match.ports import Neighbour, Vector

log = get_logger("lfr.match.redis")

_DIST = "__lfr_dist"
_RETURN_FIELDS = (_DIST, "entry_id", "category", "subject_ref")
SLOWLOG_CONFIG = "slowlog-log-slower-than"
HIDE_USER_DATA_CONFIG = "hide-user-data-from-log"
#: How long an index's algorithm is trusted before FT.INFO is asked again.
_INDEX_INFO_TTL_S = 30.0


class PrivacyGuardError(RedisError):
    """Redis would retain query arguments; nothing is sent on this connection."""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _printable(message: str, limit: int = 200) -> str:
    """Server messages only, trimmed; anything unprintable (binary arguments) is dropped."""
    return "".join(ch for ch in message if ch.isprintable())[:limit]


def _config_map(reply: Any) -> dict[str, str]:
    """CONFIG GET answers a map in RESP3 and a flat list in RESP2."""
    return {name: _text(value) for name, value in _as_map(reply).items()}


def _is_vector_query(command: bytes | str) -> bool:
    text = command.encode() if isinstance(command, str) else command
    return text.upper().startswith((b"FT.SEARCH", b"FT.AGGREGATE", b"FT.PROFILE")) and (
        b"KNN" in text.upper() or b"PARAMS" in text.upper()
    )


class RedisVectorIndex:
    """:class:`lfr_match.ports.VectorIndex` over redis-py's asyncio client (RESP3)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        query_timeout_ms: int = 1000,
        enforce_privacy_config: bool = True,
        refuse_when_monitored: bool = True,
        hnsw_ef_runtime: int = 200,
        max_connections: int = 64,
    ) -> None:
        self._query_timeout_ms = query_timeout_ms
        self._hnsw_ef_runtime = hnsw_ef_runtime
        self._indexes: dict[str, tuple[str, float]] = {}  # name -> (algorithm, valid until)
        self._enforce = enforce_privacy_config
        self._refuse_when_monitored = refuse_when_monitored
        self._guard_ok = False
        self._guard_problems: tuple[str, ...] | None = None
        self._slowlog_seen_id = -1
        common: dict[str, Any] = {
            "protocol": 3,
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
        }
        # Blocking pools: a burst beyond the pool waits (up to timeout_s) for a free connection
        # instead of failing the probe.
        self._client = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout_s,
                client_name="lfr-match",
                redis_connect_func=self._on_connect,
                **common,
            )
        )
        # Health, guard and FT.INFO commands carry no probe, so they use unguarded connections:
        # a failing guard must not read as "Redis unreachable".
        self._admin = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                url, max_connections=4, timeout=timeout_s, client_name="lfr-match-admin", **common
            )
        )

    # -- the per-connection guard ---------------------------------------------------------

    async def _on_connect(self, conn: Connection) -> None:
        await conn.on_connect()
        problems = await self._check_connection(conn)
        if problems:
            raise PrivacyGuardError("; ".join(problems))

    async def _check_connection(self, conn: Connection) -> list[str]:
        """Read (and, when enforcing, fix) the settings that decide whether Redis keeps query
        arguments. Returns what is still wrong."""
        try:
            await conn.send_command("CONFIG", "GET", SLOWLOG_CONFIG, HIDE_USER_DATA_CONFIG)
            config = _config_map(await conn.read_response())
        except NoPermissionError:
            return [
                f"cannot read Redis {SLOWLOG_CONFIG} (CONFIG GET denied); allow +config|get for "
                "the match service's Redis user, or set it to -1 in redis.conf"
            ]
        wanted = {SLOWLOG_CONFIG: "-1"}
        if HIDE_USER_DATA_CONFIG in config:  # Redis >= 8.0; older servers lack it
            wanted[HIDE_USER_DATA_CONFIG] = "yes"
        wrong = {
            name: value
            for name, value in wanted.items()
            if not _config_ok(name, config.get(name, ""))
        }
        if wrong and self._enforce:
            args = [part for name, value in wrong.items() for part in (name, value)]
            try:
                await conn.send_command("CONFIG", "SET", *args)
                await conn.read_response()
            except ResponseError as exc:
                return [
                    f"Redis refused CONFIG SET {' '.join(wrong)} ({_printable(str(exc))}); set "
                    f"{SLOWLOG_CONFIG} -1 in redis.conf"
                ]
            log.warning(
                "redis privacy settings changed",
                changed=sorted(wrong),
                previous=[config.get(name, "") for name in sorted(wrong)],
            )
            return []
        return [
            f"Redis {name} is {config.get(name, '')!r}; it must be {value!r} so that query "
            f"arguments (probe vectors) are never retained"
            for name, value in wrong.items()
        ]

    async def _scrub_slowlog(self) -> int:
        """Remove vector queries that reached SLOWLOG (an earlier run, or someone re-enabled it
        between checks). SLOWLOG cannot drop single entries, so it is reset."""
        entries = await self._admin.slowlog_get(-1)
        fresh = [e for e in entries if int(e.get("id", -1)) > self._slowlog_seen_id]
        if entries:
            self._slowlog_seen_id = max(int(e.get("id", -1)) for e in entries)
        leaked = sum(1 for e in fresh if _is_vector_query(e.get("command", b"")))
        if leaked:
            await self._admin.slowlog_reset()
            self._slowlog_seen_id = -1
            log.warning("redis slowlog held vector queries; reset it", entries=leaked)
        return leaked

    async def _monitors(self) -> list[str]:
        clients: Sequence[Mapping[str, Any]] = await self._admin.client_list()
        return [
            f"id={c.get('id')} addr={c.get('addr')}"
            for c in clients
            if "O" in str(c.get("flags", ""))
        ]

    async def privacy_ok(self) -> bool:
        problems: list[str] = []
        try:
            conn: Any = cast(Any, self._client.connection_pool).make_connection()
            try:
                await conn.connect()  # runs _on_connect, which raises what is still wrong
            finally:
                await conn.disconnect()
            await self._scrub_slowlog()
            if self._refuse_when_monitored:
                problems += [
                    f"a Redis client is attached with MONITOR ({m}) and would see every probe"
                    for m in await self._monitors()
                ]
        except PrivacyGuardError as exc:
            problems.append(str(exc))
        except RedisError as exc:
            problems.append(f"cannot check Redis: {type(exc).__name__}: {_printable(str(exc))}")
        self._set_guard(problems)
        return self._guard_ok

    def _set_guard(self, problems: list[str]) -> None:
        self._guard_ok = not problems
        key = tuple(problems)
        if key == self._guard_problems:
            return
        self._guard_problems = key
        if problems:
            log.error(
                "redis privacy guard failed; refusing to match until fixed", problems=problems
            )
        else:
            log.info("redis privacy guard ok", slowlog="off", monitor_clients=0)

    # -- queries --------------------------------------------------------------------------

    async def ready(self) -> bool:
        await self._admin.ping()
        await cast(Any, self._admin).execute_command("FT._LIST")  # vector search is loaded
        return True

    async def knn(
        self, index_name: str, vector: Vector, k: int, *, now_epoch: float | None = None
    ) -> list[Neighbour]:
        if not self._guard_ok:
            raise Unavailable(
                "Redis privacy configuration is not verified (see the service log); refusing "
                "to send probes to it",
                reason="PRIVACY_GUARD",
            )
        now = time.time() if now_epoch is None else now_epoch
        blob = vector.astype("<f4", copy=False).tobytes()
        for attempt in (1, 2):
            algorithm = await self._algorithm(index_name)
            params = ["k", str(k), "vec", blob]
            knn = f"KNN $k @{schema.EMBEDDING_FIELD} $vec"
            if algorithm == "HNSW":
                # RediSearch's default EF_RUNTIME (10) finds the enrolled subject for only ~60 %
                # of probes at 100k entries (docs/PERFORMANCE.md); FLAT rejects the option.
                knn += " EF_RUNTIME $ef"
                params += ["ef", str(self._hnsw_ef_runtime)]
            query = f"(@expires_at:[({now:.3f} +inf])=>[{knn} AS {_DIST}]"
            try:
                reply = await cast(Any, self._client).execute_command(
                    "FT.SEARCH", index_name, query,
                    "PARAMS", str(len(params)), *params,
                    "SORTBY", _DIST, "ASC",
                    "RETURN", str(len(_RETURN_FIELDS)), *_RETURN_FIELDS,
                    "LIMIT", "0", str(k),
                    "TIMEOUT", str(self._query_timeout_ms),
                    "DIALECT", "2",
                )  # fmt: skip
            except ResponseError as exc:
                message = _printable(str(exc))
                if "invalid option" in message.lower() and attempt == 1:
                    self._indexes.pop(index_name, None)  # re-created with another algorithm
                    continue
                raise _query_error(index_name, message) from None
            except PrivacyGuardError as exc:
                self._set_guard([str(exc)])
                raise Unavailable(
                    "Redis would retain probe vectors; refusing to query it",
                    reason="PRIVACY_GUARD",
                ) from None
            except (RedisConnectionError, RedisTimeoutError) as exc:
                raise _unavailable(exc) from None
            return _parse_neighbours(reply)
        raise LfrError(f"the index {index_name!r} keeps changing", reason="KNN_FAILED")

    async def _algorithm(self, index_name: str) -> str:
        """The index's vector algorithm (FLAT or HNSW), read with FT.INFO and kept for a while;
        an index whose vector field is not what the scores assume is refused."""
        now = time.monotonic()
        cached = self._indexes.get(index_name)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            info = _as_map(await cast(Any, self._admin).execute_command("FT.INFO", index_name))
        except ResponseError as exc:
            raise _query_error(index_name, _printable(str(exc))) from None
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from None
        fields = [_as_map(a) for a in info.get("attributes", [])]
        vector = next((f for f in fields if f.get("identifier") == schema.EMBEDDING_FIELD), {})
        shape = (vector.get("type"), vector.get("distance_metric"), str(vector.get("dim")))
        if shape != ("VECTOR", "COSINE", str(schema.EMBEDDING_DIM)):
            raise FailedPrecondition(
                f"index {index_name!r} has no {schema.EMBEDDING_DIM}-d COSINE vector field "
                f"{schema.EMBEDDING_FIELD!r} (the index contract)",
                reason="BAD_INDEX",
            )
        algorithm = str(vector.get("algorithm", "FLAT")).upper()
        if len(self._indexes) > 10_000:
            self._indexes.clear()
        self._indexes[index_name] = (algorithm, now + _INDEX_INFO_TTL_S)
        return algorithm

    async def close(self) -> None:
        await self._client.aclose()
        await self._admin.aclose()


def _as_map(reply: Any) -> dict[str, Any]:
    """A RESP3 map or a RESP2 flat list, with text keys and text scalar values."""
    items = (
        reply.items() if isinstance(reply, Mapping) else zip(reply[::2], reply[1::2], strict=False)
    )
    return {_text(k): _text(v) if isinstance(v, bytes) else v for k, v in items}


def _query_error(index_name: str, message: str) -> LfrError:
    lowered = message.lower()
    if "no such index" in lowered or "unknown index" in lowered:
        return FailedPrecondition(
            f"the watch-list index {index_name!r} does not exist", reason="NO_INDEX"
        )
    if "timeout" in lowered:
        return DeadlineExceeded("the KNN query timed out in Redis", reason="KNN_TIMEOUT")
    return LfrError(f"Redis refused the KNN query: {message}", reason="KNN_FAILED")


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable(
        f"Redis did not answer the KNN query ({type(exc).__name__})", reason="REDIS_UNAVAILABLE"
    )


def _config_ok(name: str, value: str) -> bool:
    if name == SLOWLOG_CONFIG:
        try:
            return int(value) < 0  # any negative value disables SLOWLOG
        except ValueError:
            return False
    return value == "yes"


def _parse_neighbours(reply: Any) -> list[Neighbour]:
    rows: list[Mapping[Any, Any]]
    if isinstance(reply, Mapping):  # RESP3
        warnings = [_text(w) for w in reply.get(b"warning", reply.get("warning", [])) or []]
        if any("timeout" in w.lower() for w in warnings):
            # A partial answer could miss the subject: never decide on one.
            raise DeadlineExceeded("the KNN query timed out in Redis", reason="KNN_TIMEOUT")
        results = reply.get(b"results", reply.get("results", [])) or []
        rows = [r.get(b"extra_attributes", r.get("extra_attributes", {})) for r in results]
    else:  # RESP2: [total, key, [field, value, ...], key, [...], ...]
        items = list(reply)[1:]
        rows = [
            {items[i + 1][j]: items[i + 1][j + 1] for j in range(0, len(items[i + 1]) - 1, 2)}
            for i in range(0, len(items) - 1, 2)
        ]
    neighbours = []
    for row in rows:
        fields = {_text(k): _text(v) for k, v in row.items()}
        distance = float(fields.get(_DIST, "nan"))
        if math.isnan(distance):
            continue
        neighbours.append(
            Neighbour(
                entry_id=fields.get("entry_id", ""),
                score=score_from_cosine_distance(distance),
                category=int(float(fields.get("category", "0") or 0)),
                subject_ref=fields.get("subject_ref", ""),
            )
        )
    neighbours.sort(key=lambda n: n.score, reverse=True)
    return neighbours
