"""Wires the watchlist service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from dataclasses import dataclass, field

from grpc import aio

from lfr.common.audit import AuditSink, GrpcAuditSink
from lfr.common.channels import open_channel
from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.common.timeutil import now
from lfr.inference import FaceAnalyzer, TritonFaceAnalyzer
from lfr.v1 import watchlist_pb2_grpc
from lfr_watchlist.audit_outbox import AuditForwarder
from lfr_watchlist.deployments import DeploymentManager
from lfr_watchlist.model import Clock
from lfr_watchlist.redis_store import RedisStore
from lfr_watchlist.servicer import WatchlistServiceServicer
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.store import Store
from lfr_watchlist.watchlists import WatchlistManager

SERVICE_NAME = "lfr.v1.WatchlistService"


@dataclass
class Deps:
    """What the service talks to; tests inject fakes (``lfr_watchlist.testing``)."""

    store: Store
    analyzer: FaceAnalyzer
    audit_sink: AuditSink
    clock: Clock = now


@dataclass
class Components:
    """The service's working parts, reachable from tests through ``WatchlistParts``."""

    deps: Deps
    watchlists: WatchlistManager
    deployments: DeploymentManager
    forwarder: AuditForwarder
    servicer: WatchlistServiceServicer


@dataclass
class WatchlistParts(ServiceParts):
    components: Components | None = field(default=None)


def real_deps(settings: WatchlistSettings) -> tuple[Deps, aio.Channel]:
    channel = open_channel(settings.alert_addr)
    deps = Deps(
        store=RedisStore.from_url(settings.redis_url, timeout_s=settings.redis_timeout_s),
        analyzer=TritonFaceAnalyzer(settings.triton_url, timeout_s=settings.triton_timeout_s),
        audit_sink=GrpcAuditSink(channel),
    )
    return deps, channel


def make_components(settings: WatchlistSettings, deps: Deps) -> Components:
    forwarder = AuditForwarder(
        deps.store, deps.audit_sink, retry_interval_s=settings.audit_retry_interval_s
    )
    watchlists = WatchlistManager(
        deps.store,
        deps.analyzer,
        settings,
        clock=deps.clock,
        audit_written=forwarder.notify,
    )
    deployments = DeploymentManager(
        deps.store, settings, clock=deps.clock, audit_written=forwarder.notify
    )
    servicer = WatchlistServiceServicer(watchlists, deployments, settings, clock=deps.clock)
    return Components(deps, watchlists, deployments, forwarder, servicer)


async def make_parts(settings: WatchlistSettings, deps: Deps | None = None) -> WatchlistParts:
    """Parts for the shared server bootstrap; without ``deps``, the real Redis, Triton and
    alert service from ``settings``."""
    channel: aio.Channel | None = None
    if deps is None:
        deps, channel = real_deps(settings)
    components = make_components(settings, deps)

    def register(server: aio.Server) -> None:
        watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(components.servicer, server)

    async def close() -> None:
        await deps.store.close()
        await deps.analyzer.close()
        if channel is not None:
            await channel.close(None)

    return WatchlistParts(
        service_names=[SERVICE_NAME],
        register=register,
        # NOT_SERVING until both answer; the alert service is not needed to serve (the audit
        # outbox holds events until it is back).
        dependencies={"redis": deps.store.ping, "triton": deps.analyzer.ready},
        background=[
            components.forwarder.run,
            components.watchlists.run_purge,
            components.deployments.run_scheduler,
        ],
        close=close,
        components=components,
    )


async def build_server(settings: WatchlistSettings, deps: Deps | None = None) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings, deps))
