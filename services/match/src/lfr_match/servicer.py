"""RPC methods of lfr.v1.MatchService: compare, decide, forget.

A probe lives only in this module's locals: it is validated, the camera's active deployment is
resolved, the deployment's watch-list index is searched, and then either the match is handed to
the alert service (and only then acknowledged) or everything about the probe is dropped. Nothing
about a non-match is logged beyond counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from lfr.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    LfrError,
)
from lfr.common.logging import get_logger
from lfr.common.timeutil import is_set, to_timestamp
from lfr.v1 import alert_pb2, common_pb2, match_pb2, match_pb2_grpc
from lfr_match import probe
from lfr_match.metrics import MatchMetrics
from lfr_match.ports import CameraResolver, EventPublisher, VectorIndex
from lfr_match.settings import MatchSettings

log = get_logger("lfr.match")

#: Kept back from the caller's deadline so a publish that runs out still answers in time.
_DEADLINE_MARGIN_S = 0.1
_REFUSAL_CODES = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


class MatchServiceServicer(match_pb2_grpc.MatchServiceServicer):
    def __init__(
        self,
        settings: MatchSettings,
        *,
        index: VectorIndex,
        resolver: CameraResolver,
        publisher: EventPublisher,
        metrics: MatchMetrics | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._index = index
        self._resolver = resolver
        self._publisher = publisher
        self.metrics = metrics if metrics is not None else MatchMetrics()
        self._wall = wall_clock

    # -- RPCs -----------------------------------------------------------------------------

    async def Match(
        self, request: match_pb2.MatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> match_pb2.MatchResponse:
        return await self._decide(request, self._publish_budget(context))

    async def MatchStream(
        self,
        request_iterator: AsyncIterator[match_pb2.MatchRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[match_pb2.MatchResponse]:
        # Probes are decided concurrently (a match waits on the alert service) but answered in
        # request order; the bounded queue is the backpressure on the caller.
        pending: asyncio.Queue[asyncio.Task[match_pb2.MatchResponse] | None] = asyncio.Queue(
            maxsize=self._settings.stream_concurrency
        )
        counts = {"probes": 0, "matched": 0, "no_match": 0, "refused": 0}

        async def feed() -> None:
            try:
                async for request in request_iterator:
                    await pending.put(asyncio.create_task(self._decide_item(request, context)))
            finally:
                await pending.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (task := await pending.get()) is not None:
                response = await task
                counts["probes"] += 1
                key = {
                    match_pb2.MATCH_OUTCOME_MATCHED: "matched",
                    match_pb2.MATCH_OUTCOME_NO_MATCH: "no_match",
                }.get(response.outcome, "refused")
                counts[key] += 1
                yield response
            await feeder  # surfaces a failure reading the request stream
        finally:
            feeder.cancel()
            while not pending.empty():
                leftover = pending.get_nowait()
                if leftover is not None:
                    leftover.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await feeder
            log.info("match stream ended", **counts)

    async def GetStats(
        self,
        request: match_pb2.GetMatchStatsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> match_pb2.MatchStats:
        return self.metrics.snapshot()

    # -- the decision ---------------------------------------------------------------------

    def _publish_budget(self, context: grpc.aio.ServicerContext[Any, Any]) -> float:
        budget = self._settings.publish_deadline_s
        remaining = context.time_remaining()
        if remaining is not None:
            budget = min(budget, remaining - _DEADLINE_MARGIN_S)
        return max(budget, 0.0)

    async def _decide_item(
        self, request: match_pb2.MatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> match_pb2.MatchResponse:
        """One probe of a stream: errors become the item's answer, the stream goes on."""
        try:
            return await self._decide(request, self._publish_budget(context))
        except LfrError as exc:
            error = common_pb2.ItemError(
                code=exc.code.value[0], reason=exc.reason, message=exc.message
            )
        except Exception as exc:  # one bad probe must not end everyone's stream
            log.error("match item failed", error_type=type(exc).__name__, exc_info=exc)
            error = common_pb2.ItemError(
                code=grpc.StatusCode.INTERNAL.value[0],
                reason="INTERNAL",
                message="internal error; see the service log",
            )
        return match_pb2.MatchResponse(
            request_id=request.request_id, outcome=match_pb2.MATCH_OUTCOME_REFUSED, error=error
        )

    async def _decide(
        self, request: match_pb2.MatchRequest, publish_budget_s: float
    ) -> match_pb2.MatchResponse:
        self.metrics.probe()
        try:
            return await self._compare(request, publish_budget_s)
        except InvalidArgument as exc:
            self.metrics.refused(exc.reason, invalid=True)
            raise
        except LfrError as exc:
            if exc.code in _REFUSAL_CODES:
                self.metrics.refused(exc.reason)
            else:
                self.metrics.failed(exc.reason)
            raise

    async def _compare(
        self, request: match_pb2.MatchRequest, publish_budget_s: float
    ) -> match_pb2.MatchResponse:
        settings = self._settings
        vector = probe.validate(
            request,
            norm_tolerance=settings.norm_tolerance,
            max_top_k=settings.max_top_k,
            max_crop_bytes=settings.max_crop_bytes,
        )
        deployment = await self._resolver.resolve(request.camera_id)
        if deployment is None:
            raise FailedPrecondition(
                f"no deployment is active for camera {request.camera_id!r}; nothing is matched",
                reason="NO_DEPLOYMENT",
            )
        if deployment.threshold < settings.min_threshold:
            raise FailedPrecondition(
                f"deployment {deployment.deployment_id!r} has threshold "
                f"{deployment.threshold:.3f}, below the floor {settings.min_threshold:.3f}",
                reason="THRESHOLD_BELOW_FLOOR",
            )
        started = time.perf_counter()
        neighbours = await self._index.knn(
            deployment.index_name,
            vector,
            request.top_k or settings.default_top_k,
            now_epoch=self._wall(),
        )
        self.metrics.knn(time.perf_counter() - started)
        del vector  # the probe's embedding is not needed past the query

        best = max(neighbours, key=lambda n: n.score) if neighbours else None
        top_score = best.score if best is not None else -1.0  # -1: nothing to compare with
        if best is None or best.score < deployment.threshold:
            self.metrics.no_match()
            return match_pb2.MatchResponse(
                request_id=request.request_id,
                outcome=match_pb2.MATCH_OUTCOME_NO_MATCH,
                deployment_id=deployment.deployment_id,
                top_score=top_score,
            )

        event = alert_pb2.MatchEvent(
            event_id=probe.event_id(deployment.deployment_id, request.request_id),
            deployment_id=deployment.deployment_id,
            camera_id=request.camera_id,
            location=deployment.location,
            watchlist_id=deployment.watchlist_id,
            entry_id=best.entry_id,
            subject_ref=best.subject_ref,
            category=best.category,  # type: ignore[arg-type]
            score=best.score,
            threshold=deployment.threshold,
            rank=1,
            capture_time=(
                request.capture_time if is_set(request.capture_time) else to_timestamp(self._wall())
            ),
            model_version=request.model_version,
            crop_jpeg=request.crop_jpeg,
            box=request.box,
            track_id=request.track_id,
        )
        try:
            published = await self._publisher.publish(event, deadline_s=publish_budget_s)
        except LfrError:
            self.metrics.publish_failed()
            raise
        self.metrics.matched()
        log.info(
            "match published",
            deployment_id=deployment.deployment_id,
            watchlist_id=deployment.watchlist_id,
            entry_id=best.entry_id,
            score=round(best.score, 4),
            threshold=round(deployment.threshold, 4),
            event_id=event.event_id,
            alert_id=published.alert_id,
            replayed=published.replayed,
        )
        return match_pb2.MatchResponse(
            request_id=request.request_id,
            outcome=match_pb2.MATCH_OUTCOME_MATCHED,
            deployment_id=deployment.deployment_id,
            match=match_pb2.MatchedEntry(
                watchlist_id=deployment.watchlist_id,
                entry_id=best.entry_id,
                score=best.score,
                rank=1,
            ),
            event_id=event.event_id,
            alert_id=published.alert_id,
            top_score=top_score,
        )
