"""Adapters for the two lfr services match calls: the watchlist service (which deployment is
active for a camera) and the alert service (where matches go)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lfr.common import schema
from lfr.common.channels import open_channel
from lfr.common.errors import FailedPrecondition, LfrError, Unavailable, from_rpc_error
from lfr.common.logging import get_logger
from lfr.common.timeutil import is_set, to_epoch
from lfr.v1 import alert_pb2, alert_pb2_grpc, watchlist_pb2, watchlist_pb2_grpc
from lfr_match.ports import ActiveDeployment, Published

log = get_logger("lfr.match.peers")


def peer_channel(address: str, *, reconnect_max_s: float = 2.0) -> aio.Channel:
    """A channel to another lfr service; retries are ours (bounded by the probe's deadline),
    not the channel's."""
    return open_channel(address, reconnect_max_s=reconnect_max_s, channel_retries=False)


async def peer_serving(channel: aio.Channel, *, timeout_s: float = 1.0) -> bool:
    """grpc.health.v1 overall status of a peer (reported, never gating match's own health)."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


class _Cached:
    __slots__ = ("until", "value")

    def __init__(self, until: float, value: ActiveDeployment | None) -> None:
        self.until = until
        self.value = value


class GrpcCameraResolver:
    """:class:`lfr_match.ports.CameraResolver` over WatchlistService.ResolveCamera.

    Answers (including "none active") are reused for ``cache_ttl_s``; concurrent misses for one
    camera share a single call. No stale answer is served when the watchlist service fails:
    a deployment stopped during an outage must not keep matching. A cached deployment's own
    end time is still checked on every probe.
    """

    def __init__(
        self,
        channel: aio.Channel,
        *,
        timeout_s: float = 2.0,
        cache_ttl_s: float = 1.0,
        max_cameras: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._channel = channel
        self._stub = watchlist_pb2_grpc.WatchlistServiceStub(channel)
        self._timeout_s = timeout_s
        self._ttl_s = cache_ttl_s
        self._max = max_cameras
        self._clock = clock
        self._wall = wall_clock
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[ActiveDeployment | None]] = {}

    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        now = self._clock()
        hit = self._cache.get(camera_id)
        if hit is not None and hit.until > now:
            return _still_active(hit.value, self._wall())
        pending = self._inflight.get(camera_id)
        if pending is not None:
            return _still_active(await asyncio.shield(pending), self._wall())
        future: asyncio.Future[ActiveDeployment | None] = asyncio.get_running_loop().create_future()
        self._inflight[camera_id] = future
        try:
            value = await self._call(camera_id)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it; no "never retrieved" warning
            raise
        else:
            future.set_result(value)
            if self._ttl_s > 0:
                self._remember(camera_id, value)
        finally:
            del self._inflight[camera_id]
        return _still_active(value, self._wall())

    def _remember(self, camera_id: str, value: ActiveDeployment | None) -> None:
        now = self._clock()
        if len(self._cache) >= self._max:
            self._cache = {k: v for k, v in self._cache.items() if v.until > now}
            if len(self._cache) >= self._max:
                self._cache.clear()
        self._cache[camera_id] = _Cached(now + self._ttl_s, value)

    async def _call(self, camera_id: str) -> ActiveDeployment | None:
        try:
            reply = await self._stub.ResolveCamera(
                watchlist_pb2.ResolveCameraRequest(camera_id=camera_id), timeout=self._timeout_s
            )
        except grpc.RpcError as err:
            error = from_rpc_error(err, what="watchlist service ResolveCamera")
            if isinstance(error, Unavailable) or err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise Unavailable(error.message, reason="WATCHLIST_UNAVAILABLE") from None
            raise error from None
        return deployment_from_reply(camera_id, reply)

    async def close(self) -> None:
        await self._channel.close(None)


def _still_active(value: ActiveDeployment | None, now_epoch: float) -> ActiveDeployment | None:
    return value if value is not None and value.covers(now_epoch) else None


def deployment_from_reply(
    camera_id: str, reply: watchlist_pb2.ResolveCameraResponse
) -> ActiveDeployment | None:
    """Turn a ResolveCamera answer into what match uses, refusing inconsistent answers (only the
    watch list of an active deployment that names this camera may be searched)."""
    if not reply.active:
        return None
    dep = reply.deployment
    if dep.state not in (
        watchlist_pb2.DEPLOYMENT_STATE_ACTIVE,
        watchlist_pb2.DEPLOYMENT_STATE_UNSPECIFIED,
    ):
        return None
    if not dep.deployment_id or not dep.watchlist_id:
        raise FailedPrecondition(
            f"the watchlist service named an active deployment for camera {camera_id!r} without "
            "a deployment or watch-list id",
            reason="BAD_DEPLOYMENT",
        )
    if camera_id not in dep.camera_ids:
        raise FailedPrecondition(
            f"deployment {dep.deployment_id!r} does not list camera {camera_id!r}",
            reason="BAD_DEPLOYMENT",
        )
    return ActiveDeployment(
        deployment_id=dep.deployment_id,
        watchlist_id=dep.watchlist_id,
        index_name=reply.index_name or schema.index_name(dep.watchlist_id),
        threshold=float(dep.threshold),
        location=dep.location,
        start_epoch=to_epoch(dep.start_time) if is_set(dep.start_time) else None,
        end_epoch=to_epoch(dep.end_time) if is_set(dep.end_time) else None,
    )


#: Alert answers worth another attempt with the same event id (idempotent on its side).
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


class GrpcAlertPublisher:
    """:class:`lfr_match.ports.EventPublisher` over AlertService.Publish: retries with
    exponential backoff and jitter until the deadline; ``on_retry`` counts extra attempts."""

    def __init__(
        self,
        channel: aio.Channel,
        *,
        attempt_timeout_s: float = 2.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 1.0,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self._channel = channel
        self._stub = alert_pb2_grpc.AlertServiceStub(channel)
        self._attempt_timeout_s = attempt_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._on_retry = on_retry

    async def publish(self, event: alert_pb2.MatchEvent, *, deadline_s: float) -> Published:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + deadline_s
        backoff = self._backoff_initial_s
        attempts = 0
        last = "no attempt made"
        while True:
            remaining = give_up_at - loop.time()
            if remaining <= 0:
                break
            attempts += 1
            try:
                reply = await self._stub.Publish(
                    event, timeout=min(self._attempt_timeout_s, remaining)
                )
            except grpc.RpcError as err:
                code = err.code()
                if code not in _RETRYABLE:
                    error: LfrError = from_rpc_error(err, what="alert service Publish")
                    error.reason = "ALERT_REJECTED"
                    raise error from None
                last = code.name
            else:
                return Published(
                    alert_id=reply.alert_id,
                    replayed=reply.replayed,
                    deduplicated=reply.deduplicated,
                )
            pause = min(backoff, give_up_at - loop.time()) * random.uniform(0.5, 1.0)
            if pause <= 0:
                break
            if self._on_retry is not None:
                self._on_retry()
            await asyncio.sleep(pause)
            backoff = min(backoff * 2, self._backoff_max_s)
        log.warning("match event not published", attempts=attempts, last_status=last)
        raise Unavailable(
            f"the alert service did not take the match event ({attempts} attempts in "
            f"{deadline_s:.1f} s, last {last}); retry with the same request_id",
            reason="ALERT_UNAVAILABLE",
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._channel.close(None)
