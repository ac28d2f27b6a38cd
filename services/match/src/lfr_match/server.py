"""Wires the match service: dependencies in, servicer registered, server built.

Health: NOT_SERVING until Redis answers with vector search AND the Redis privacy guard passes
(slowlog off, no MONITOR client), both re-checked every ``health_interval_s``. The watchlist
and alert services are reported (a log line on every change, the ``lfr_match_peer_serving``
gauge) but do not gate SERVING: non-matches, the bulk of the traffic, need neither published,
and a match that cannot be handed on is answered UNAVAILABLE per probe, so the caller retries.
Gating on them would also take every match replica out of rotation together during a peer
outage and tie the suite's start order to match.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from grpc import aio

from lfr.common.errors import ConfigError
from lfr.common.logging import get_logger
from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.v1 import match_pb2_grpc
from lfr_match.metrics import MatchMetrics
from lfr_match.peers import GrpcAlertPublisher, GrpcCameraResolver, peer_channel, peer_serving
from lfr_match.ports import CameraResolver, EventPublisher, VectorIndex
from lfr_match.servicer import MatchServiceServicer
from lfr_match.settings import MatchSettings

SERVICE_NAME = "lfr.v1.MatchService"
log = get_logger("lfr.match.server")


@dataclass
class MatchDeps:
    index: VectorIndex
    resolver: CameraResolver
    publisher: EventPublisher
    #: Reported peer reachability, by peer name (``watchlist``, ``alert``).
    peer_probes: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)


def real_deps(settings: MatchSettings, metrics: MatchMetrics) -> MatchDeps:
    """The production adapters: Redis, and gRPC channels to watchlist and alert."""
    from lfr_match.redis_index import RedisVectorIndex  # the only redis importer

    watchlist = peer_channel(settings.watchlist_addr, reconnect_max_s=settings.peer_reconnect_max_s)
    alert = peer_channel(settings.alert_addr, reconnect_max_s=settings.peer_reconnect_max_s)
    return MatchDeps(
        index=RedisVectorIndex(
            settings.redis_url,
            timeout_s=settings.redis_timeout_s,
            query_timeout_ms=settings.knn_timeout_ms,
            enforce_privacy_config=settings.redis_enforce_privacy_config,
            refuse_when_monitored=settings.refuse_when_monitored,
            hnsw_ef_runtime=settings.hnsw_ef_runtime,
            max_connections=settings.redis_max_connections,
        ),
        resolver=GrpcCameraResolver(
            watchlist,
            timeout_s=settings.resolve_timeout_s,
            cache_ttl_s=settings.resolve_cache_ttl_s,
            max_cameras=settings.resolve_cache_max_cameras,
        ),
        publisher=GrpcAlertPublisher(
            alert,
            attempt_timeout_s=settings.publish_attempt_timeout_s,
            backoff_initial_s=settings.publish_backoff_initial_s,
            backoff_max_s=settings.publish_backoff_max_s,
            on_retry=metrics.publish_retried,
        ),
        peer_probes={
            "watchlist": lambda: peer_serving(watchlist),
            "alert": lambda: peer_serving(alert),
        },
    )


async def make_parts(
    settings: MatchSettings,
    deps: MatchDeps | None = None,
    metrics: MatchMetrics | None = None,
) -> ServiceParts:
    metrics = metrics if metrics is not None else MatchMetrics()
    deps = deps if deps is not None else real_deps(settings, metrics)
    servicer = MatchServiceServicer(
        settings,
        index=deps.index,
        resolver=deps.resolver,
        publisher=deps.publisher,
        metrics=metrics,
    )

    def register(server: aio.Server) -> None:
        match_pb2_grpc.add_MatchServiceServicer_to_server(servicer, server)

    async def privacy_guard() -> bool:
        ok = False
        try:
            ok = await deps.index.privacy_ok()
        finally:
            metrics.privacy_guard.set(1 if ok else 0)
        return ok

    async def watch_peers() -> None:
        last: dict[str, bool] = {}
        while True:
            for name, probe in deps.peer_probes.items():
                try:
                    ok = bool(await probe())
                except Exception:  # unreachable, whatever the reason
                    ok = False
                metrics.peer_up.labels(name).set(1 if ok else 0)
                if last.get(name) != ok:
                    log.info("peer", peer=name, serving=ok)
                last[name] = ok
            await asyncio.sleep(settings.health_interval_s)

    if settings.metrics_port:
        try:
            port = metrics.serve(settings.metrics_port, settings.metrics_host)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
                f"{exc.strerror}; set LFR_MATCH_METRICS_PORT to a free port or 0"
            ) from None
        log.info("metrics endpoint", address=f"{settings.metrics_host}:{port}")

    async def close() -> None:
        metrics.stop_serving()
        await deps.publisher.close()
        await deps.resolver.close()
        await deps.index.close()

    return ServiceParts(
        service_names=[SERVICE_NAME],
        register=register,
        dependencies={"redis": deps.index.ready, "redis-privacy-guard": privacy_guard},
        background=[watch_peers] if deps.peer_probes else [],
        close=close,
    )


async def build_server(
    settings: MatchSettings, deps: MatchDeps | None = None, metrics: MatchMetrics | None = None
) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings, deps, metrics))
