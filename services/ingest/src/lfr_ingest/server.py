"""Wires the ingest service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from grpc import aio

from lfr.common.audit import AuditSink, GrpcAuditSink
from lfr.common.channels import open_channel
from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.inference.types import FaceAnalyzer
from lfr.v1 import ingest_pb2_grpc
from lfr_ingest.audit_report import FacesSeenReporter
from lfr_ingest.deployments import CachedResolver
from lfr_ingest.ingest import Ingest
from lfr_ingest.ports import DeploymentResolver, MatchClient, VideoOpener
from lfr_ingest.servicer import IngestServiceServicer
from lfr_ingest.settings import IngestSettings
from lfr_ingest.sources import SourceManager

SERVICE_NAME = "lfr.v1.IngestService"


@dataclass
class IngestDeps:
    """What ingest talks to; tests inject fakes. ``ready`` probes feed grpc.health.v1."""

    analyzer: FaceAnalyzer
    matcher: MatchClient
    resolver: DeploymentResolver
    opener: VideoOpener
    audit: AuditSink | None = None
    #: Dependency name -> probe; health is NOT_SERVING until all pass.
    ready: dict[str, Callable[[], Awaitable[bool]]] = field(default_factory=dict)
    close: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


async def real_deps(settings: IngestSettings) -> IngestDeps:
    """Triton, match, watchlist and alert over gRPC; OpenCV for pull sources."""
    from lfr.inference import TritonFaceAnalyzer  # the only path to tritonclient
    from lfr_ingest.adapters.match import StreamingMatchClient
    from lfr_ingest.adapters.video import OpenCvOpener
    from lfr_ingest.adapters.watchlist import GrpcDeploymentResolver

    analyzer = TritonFaceAnalyzer(settings.triton_url, timeout_s=settings.analyze_timeout_s)
    match_channel = open_channel(settings.match_addr)
    watchlist_channel = open_channel(
        settings.watchlist_addr, idempotent_methods=[("lfr.v1.WatchlistService", "ResolveCamera")]
    )
    matcher = StreamingMatchClient(
        match_channel,
        timeout_s=settings.match_timeout_s,
        stream_max_age_s=settings.match_stream_max_age_s,
    )
    resolver = GrpcDeploymentResolver(watchlist_channel, timeout_s=settings.resolve_timeout_s)
    channels: list[aio.Channel] = [match_channel, watchlist_channel]
    audit: AuditSink | None = None
    if settings.alert_addr:
        alert_channel = open_channel(settings.alert_addr)
        channels.append(alert_channel)
        audit = GrpcAuditSink(alert_channel)

    async def close_channels() -> None:
        for channel in channels:
            await channel.close(None)

    return IngestDeps(
        analyzer=analyzer,
        matcher=matcher,
        resolver=resolver,
        opener=OpenCvOpener(),
        audit=audit,
        ready={"triton": analyzer.ready, "match": matcher.ready, "watchlist": resolver.ready},
        close=[matcher.close, analyzer.close, close_channels],
    )


async def make_parts(settings: IngestSettings, deps: IngestDeps | None = None) -> ServiceParts:
    if deps is None:
        deps = await real_deps(settings)
    resolver = CachedResolver(deps.resolver, settings.deployment_cache_s)
    ingest = Ingest(settings, analyzer=deps.analyzer, matcher=deps.matcher, resolver=resolver)
    sources = SourceManager(ingest, deps.opener, settings)
    servicer = IngestServiceServicer(ingest, sources)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = []
    reporter = None
    if deps.audit is not None and settings.audit_interval_s > 0:
        reporter = FacesSeenReporter(ingest, deps.audit, interval_s=settings.audit_interval_s)
        background.append(reporter.run)

    def register(server: aio.Server) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)

    async def close() -> None:
        await sources.close()
        await ingest.close()
        if reporter is not None:
            await reporter.report()  # the last period's counts
        for fn in deps.close:
            await fn()

    return ServiceParts(
        service_names=[SERVICE_NAME],
        register=register,
        dependencies=dict(deps.ready),
        background=background,
        close=close,
    )


async def build_server(settings: IngestSettings, deps: IngestDeps | None = None) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings, deps))
