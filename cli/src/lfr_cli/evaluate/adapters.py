"""The real ``Enroller`` and ``CandidateSearch`` of an evaluation run.

* :class:`GrpcEnroller` — the watchlist service's ``CreateWatchlist`` / ``Enrol`` /
  ``RemoveEntry`` over gRPC, so enrolment runs exactly as in production (the service's face
  checks, its Triton call, its Redis index writes). Entries carry governance metadata that marks
  them as evaluation data.
* :class:`IndexSearch` — KNN over the watch list's RediSearch index through the match
  service's own index adapter (``lfr_match.redis_index``): the same query, expiry filter,
  privacy guard and distance-to-score conversion match decides with, but with no threshold
  and no alert. The match RPC itself cannot serve a threshold sweep: it needs an active
  deployment (threshold refused below the floor) and publishes alerts.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from grpc import aio

from lfr.common import schema
from lfr.common.channels import open_channel
from lfr.common.errors import LfrError, Unavailable, from_rpc_error
from lfr.common.interceptors import REASON_METADATA_KEY
from lfr.common.timeutil import to_timestamp
from lfr.inference import Float32Array
from lfr.v1 import common_pb2, watchlist_pb2, watchlist_pb2_grpc
from lfr_cli.evaluate.run import Candidate

__all__ = ["ACTOR", "GrpcEnroller", "IndexSearch"]

#: Who the watchlist service's audit log names for evaluation actions.
ACTOR = "lfr evaluate"
#: The category is required and comes from a fixed policy list that has no "evaluation" value;
#: the other governance fields mark the entry as evaluation data.
EVALUATION_CATEGORY = common_pb2.CATEGORY_WANTED_BY_COURTS
EVALUATION_LEGAL_BASIS = "EVALUATION ONLY - accuracy measurement, not a real watch-list entry"


def _rpc_error(err: grpc.RpcError, what: str) -> LfrError:
    """Like ``from_rpc_error`` but keeps the service's machine-readable ``lfr-reason``."""
    mapped = from_rpc_error(err, what=what)
    if isinstance(err, aio.AioRpcError):
        # grpc.aio returns an aio.Metadata mapping (the type stubs say a tuple).
        trailing: Any = err.trailing_metadata()
        reason = trailing.get(REASON_METADATA_KEY) if trailing is not None else None
        if reason:
            mapped.reason = reason if isinstance(reason, str) else bytes(reason).decode()
    return mapped


class GrpcEnroller:
    """:class:`lfr_cli.evaluate.run.Enroller` over the watchlist service's gRPC API."""

    def __init__(self, address: str, *, timeout_s: float = 30.0, entry_ttl_s: float = 86400.0):
        self.address = address
        self.timeout_s = timeout_s
        self.entry_ttl_s = entry_ttl_s
        self._channel = open_channel(address)
        self._stub = watchlist_pb2_grpc.WatchlistServiceStub(self._channel)

    async def create_watchlist(self, *, name: str, description: str) -> str:
        request = watchlist_pb2.CreateWatchlistRequest(
            name=name,
            description=description,
            algorithm=watchlist_pb2.INDEX_ALGORITHM_FLAT,  # exact: measure the model, not HNSW
            keep_enrolment_images=False,
            created_by=ACTOR,
        )
        try:
            reply = await self._stub.CreateWatchlist(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise _rpc_error(err, f"watchlist service at {self.address}: CreateWatchlist") from None
        return str(reply.watchlist_id)

    async def enrol(self, watchlist_id: str, image: bytes, *, identity: str, source: str) -> str:
        now = datetime.now(UTC)
        governance = watchlist_pb2.Governance(
            category=EVALUATION_CATEGORY,
            legal_basis_ref=EVALUATION_LEGAL_BASIS,
            image_source=f"evaluation dataset: {source}"[:200],
            image_date=to_timestamp(now),
            approver=ACTOR,
            expires_at=to_timestamp(now + timedelta(seconds=self.entry_ttl_s)),
            subject_ref="evaluation subject",
        )
        request = watchlist_pb2.EnrolRequest(
            watchlist_id=watchlist_id, images=[image], governance=governance
        )
        try:
            reply = await self._stub.Enrol(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise _rpc_error(err, "Enrol") from None
        return str(reply.entry_id)

    async def remove_entry(self, watchlist_id: str, entry_id: str) -> None:
        request = watchlist_pb2.RemoveEntryRequest(
            watchlist_id=watchlist_id,
            entry_id=entry_id,
            requested_by=ACTOR,
            reason="evaluation finished",
        )
        try:
            await self._stub.RemoveEntry(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise _rpc_error(err, "RemoveEntry") from None

    async def close(self) -> None:
        await self._channel.close(None)


class IndexSearch:
    """:class:`lfr_cli.evaluate.run.CandidateSearch` through match's RediSearch adapter."""

    def __init__(self, redis_url: str, *, timeout_s: float = 10.0) -> None:
        from lfr_match.redis_index import RedisVectorIndex  # the redis-importing module

        self.redis_url = redis_url
        self._index = RedisVectorIndex(
            redis_url, timeout_s=timeout_s, query_timeout_ms=int(timeout_s * 1000)
        )

    async def prepare(self) -> None:
        # Turns Redis' SLOWLOG off as match does: probe vectors are query arguments.
        if not await self._index.privacy_ok():
            raise Unavailable(
                f"Redis at {self.redis_url} cannot be queried safely or at all (its privacy "
                "settings could not be verified); check that it runs and allows CONFIG GET/SET",
                reason="PRIVACY_GUARD",
            )

    async def search(self, watchlist_id: str, embedding: Float32Array, k: int) -> list[Candidate]:
        neighbours = await self._index.knn(
            schema.index_name(watchlist_id), embedding, k, now_epoch=time.time()
        )
        best: dict[str, float] = {}
        for n in neighbours:  # one hash per enrolment vector: keep each entry's best
            best[n.entry_id] = max(n.score, best.get(n.entry_id, -2.0))
        return [Candidate(entry_id, score) for entry_id, score in best.items()]

    async def close(self) -> None:
        await self._index.close()
