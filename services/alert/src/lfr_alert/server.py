"""Wires the alert service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from dataclasses import dataclass

from grpc import aio

from lfr.common.logging import get_logger
from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.v1 import alert_pb2_grpc
from lfr_alert.fanout import AlertHub
from lfr_alert.retention import RetentionJob
from lfr_alert.routing import Router, load_routes
from lfr_alert.servicer import AlertServicer
from lfr_alert.settings import AlertSettings
from lfr_alert.store import AlertStore

SERVICE_NAME = "lfr.v1.AlertService"

log = get_logger("lfr.alert")


@dataclass
class AlertDeps:
    """What the service depends on; tests inject fakes (e.g. ``InMemoryAlertStore``)."""

    store: AlertStore
    router: Router | None = None  # None: load from settings


async def make_parts(settings: AlertSettings, deps: AlertDeps | None = None) -> ServiceParts:
    # Bad rules fail here, at start-up, with a ConfigError naming the problem.
    router = deps.router if deps is not None and deps.router is not None else None
    if router is None:
        router = load_routes(settings.routes_file)
    if deps is None:
        from lfr_alert.redis_store import RedisAlertStore

        store: AlertStore = RedisAlertStore(settings.redis_url, timeout_s=settings.redis_timeout_s)
    else:
        store = deps.store
    hub = AlertHub(store, max_subscribers=settings.max_subscribers)
    retention = RetentionJob(
        store,
        interval_s=settings.retention_sweep_interval_s,
        compact_interval_s=settings.compact_interval_s,
    )
    servicer = AlertServicer(settings, store, router, hub)
    log.info(
        "routing rules loaded",
        source=router.source,
        rules=[rule.name for rule in router.rules],
        channels=sorted(router.channels),
    )

    def register(server: aio.Server) -> None:
        alert_pb2_grpc.add_AlertServiceServicer_to_server(servicer, server)

    return ServiceParts(
        service_names=[SERVICE_NAME],
        register=register,
        dependencies={"redis": store.ping},
        background=[hub.run, retention.run],
        close=store.close,
    )


async def build_server(settings: AlertSettings, deps: AlertDeps | None = None) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings, deps))
