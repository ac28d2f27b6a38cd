"""Test helpers for the match service: a watch-list index written exactly per the index contract
(the watchlist service is the real writer), and small real gRPC doubles of the two services
match calls, WatchlistService.ResolveCamera and AlertService.Publish.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

from lfr.common import schema
from lfr.common.timeutil import to_timestamp
from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2, watchlist_pb2, watchlist_pb2_grpc

Vectors = npt.NDArray[np.float32]


def unit_vectors(n: int, seed: int, dim: int = schema.EMBEDDING_DIM) -> Vectors:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def near(vector: Vectors, cos: float, seed: int) -> Vectors:
    """A unit vector whose cosine similarity with ``vector`` (unit) is ``cos``."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(vector.shape).astype(np.float64)
    base = vector.astype(np.float64)
    noise -= noise.dot(base) * base
    noise /= np.linalg.norm(noise)
    out = cos * base + np.sqrt(1 - cos * cos) * noise
    result: Vectors = (out / np.linalg.norm(out)).astype(np.float32)
    return result


# -- the index contract ----------------------------------------------------------------------


def create_index(
    client: Any, watchlist_id: str, algorithm: str = "FLAT", metric: str = "COSINE"
) -> str:
    """``FT.CREATE`` per the contract (``metric`` other than COSINE breaks it, for tests of
    that); ``client`` is a sync redis-py client."""
    name = schema.index_name(watchlist_id)
    params = ["TYPE", "FLOAT32", "DIM", str(schema.EMBEDDING_DIM), "DISTANCE_METRIC", metric]
    client.execute_command(
        "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", schema.entry_prefix(watchlist_id),
        "SCHEMA", schema.EMBEDDING_FIELD, "VECTOR", algorithm, str(len(params)), *params,
        "entry_id", "TAG", "expires_at", "NUMERIC", "category", "NUMERIC",
    )  # fmt: skip
    return name


def add_entry(
    client: Any,
    watchlist_id: str,
    entry_id: str,
    vectors: Vectors,
    *,
    expires_at: float | None = None,
    category: int = common_pb2.CATEGORY_WANTED_BY_COURTS,
    subject_ref: str = "",
) -> list[str]:
    """One hash per enrolment vector, ``<prefix><entry_id>:<n>``."""
    keys = []
    expiry = time.time() + 86_400 if expires_at is None else expires_at
    pipe = client.pipeline(transaction=False)
    for n, vector in enumerate(np.atleast_2d(vectors)):
        key = f"{schema.entry_key(watchlist_id, entry_id)}:{n}"
        pipe.hset(
            key,
            mapping={
                schema.EMBEDDING_FIELD: vector.astype("<f4").tobytes(),
                "entry_id": entry_id,
                "expires_at": f"{expiry:.3f}",
                "category": int(category),
                "subject_ref": subject_ref or f"ref-{entry_id}",
            },
        )
        keys.append(key)
    pipe.execute()
    return keys


# -- gRPC doubles ------------------------------------------------------------------------------


@dataclass
class Deployment:
    deployment_id: str
    watchlist_id: str
    cameras: list[str]
    threshold: float = 0.92
    location: str = "test-street"
    end_epoch: float | None = None


class WatchlistDouble(watchlist_pb2_grpc.WatchlistServiceServicer):
    """ResolveCamera from an in-memory list of active deployments."""

    def __init__(self) -> None:
        self.deployments: list[Deployment] = []
        self.calls = 0

    async def ResolveCamera(
        self, request: watchlist_pb2.ResolveCameraRequest, context: Any
    ) -> watchlist_pb2.ResolveCameraResponse:
        self.calls += 1
        for dep in self.deployments:
            if request.camera_id in dep.cameras:
                message = watchlist_pb2.Deployment(
                    deployment_id=dep.deployment_id,
                    location=dep.location,
                    camera_ids=dep.cameras,
                    watchlist_id=dep.watchlist_id,
                    threshold=dep.threshold,
                    state=watchlist_pb2.DEPLOYMENT_STATE_ACTIVE,
                )
                if dep.end_epoch is not None:
                    message.end_time.CopyFrom(to_timestamp(dep.end_epoch))
                return watchlist_pb2.ResolveCameraResponse(
                    active=True,
                    deployment=message,
                    index_name=schema.index_name(dep.watchlist_id),
                )
        return watchlist_pb2.ResolveCameraResponse(active=False)


@dataclass
class AlertDouble(alert_pb2_grpc.AlertServiceServicer):
    """Publish with idempotency by event id, in memory; ``fail_next`` answers that many calls
    with ``fail_code`` first."""

    events: dict[str, alert_pb2.MatchEvent] = field(default_factory=dict)
    calls: int = 0
    fail_next: int = 0
    fail_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE

    async def Publish(
        self, request: alert_pb2.MatchEvent, context: Any
    ) -> alert_pb2.PublishResponse:
        self.calls += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            await context.abort(self.fail_code, "alert double told to fail")
        alert_id = f"alert-{request.event_id}"
        if request.event_id in self.events:
            return alert_pb2.PublishResponse(alert_id=alert_id, replayed=True)
        self.events[request.event_id] = request
        return alert_pb2.PublishResponse(alert_id=alert_id)


def watchlist_double() -> WatchlistDouble:
    return WatchlistDouble()  # type: ignore[abstract]  # the other RPCs answer UNIMPLEMENTED


def alert_double() -> AlertDouble:
    return AlertDouble()  # type: ignore[abstract]  # the other RPCs answer UNIMPLEMENTED


class DoubleServer:
    """Runs the doubles on one gRPC server (health included) that can be stopped and started
    again on the same port."""

    def __init__(
        self,
        *,
        watchlist: WatchlistDouble | None = None,
        alert: AlertDouble | None = None,
        port: int = 0,
    ) -> None:
        self.watchlist = watchlist
        self.alert = alert
        self.port = port
        self._server: aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = aio.server()
        if self.watchlist is not None:
            watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(self.watchlist, server)
        if self.alert is not None:
            alert_pb2_grpc.add_AlertServiceServicer_to_server(self.alert, server)
        checker = health_aio.HealthServicer()
        await checker.set("", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None


# -- finding probe data where it must not be ---------------------------------------------------

_NUMBER = re.compile(r"-?\d*\.\d+(?:[eE][-+]?\d+)?")


class LeakDetector:
    """Looks for probe vectors in bytes (raw float32, any alignment, any 12-byte run) and in text
    (hex runs, and each value written out at several precisions)."""

    def __init__(self, probes: Vectors) -> None:
        raw = [p.astype("<f4").tobytes() for p in probes]
        windows = [r[i : i + 8] for r in raw for i in range(0, len(r) - 7, 4)]
        self._u64 = np.unique(np.frombuffer(b"".join(windows), dtype="<u8"))
        self._hex = {r.hex()[i : i + 16] for r in raw for i in range(0, len(r) * 2 - 15, 8)}
        values = probes.astype(np.float32).ravel()
        self._texts: set[str] = set()
        for value in values:
            v64 = float(value)
            self._texts |= {
                repr(v64),  # what json/repr write for the float32 widened to a double
                str(value),  # numpy's shortest float32 repr
                np.format_float_positional(value, unique=True),
                f"{v64:.9g}",
                f"{v64:.7g}",
                f"{v64:.6g}",
            }

    def in_bytes(self, data: bytes) -> int:
        """How many 8-byte runs of ``data`` are runs of some probe's float32 bytes."""
        hits = 0
        for offset in range(8):
            usable = (len(data) - offset) // 8 * 8
            if usable <= 0:
                continue
            runs = np.frombuffer(data[offset : offset + usable], dtype="<u8")
            hits += int(np.isin(runs, self._u64).sum())
        return hits

    def in_text(self, text: str) -> list[str]:
        found = [token for token in _NUMBER.findall(text) if token in self._texts]
        lowered = text.lower()
        found += [
            lowered[i : i + 16]
            for i in range(len(lowered) - 15)
            if lowered[i : i + 16] in self._hex
        ]
        return found

    def anywhere(self, data: bytes) -> list[str]:
        """Both checks on one blob (logs, SLOWLOG, AOF, metrics); empty when clean."""
        problems = [f"{n} raw float32 runs" for n in [self.in_bytes(data)] if n]
        return problems + self.in_text(data.decode("utf-8", errors="replace"))
