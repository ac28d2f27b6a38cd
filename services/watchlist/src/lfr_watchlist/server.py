"""Wires the watchlist service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.v1 import watchlist_pb2_grpc

from lfr_watchlist.servicer import WatchlistServiceServicer
from lfr_watchlist.settings import WatchlistSettings

SERVICE_NAME = "lfr.v1.WatchlistService"


async def make_parts(settings: WatchlistSettings) -> ServiceParts:
    servicer = WatchlistServiceServicer()  # type: ignore[abstract]  # skeleton: base raises UNIMPLEMENTED

    def register(server: object) -> None:
        watchlist_pb2_grpc.add_WatchlistServiceServicer_to_server(servicer, server)  # type: ignore[arg-type]

    return ServiceParts(service_names=[SERVICE_NAME], register=register)


async def build_server(settings: WatchlistSettings) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings))
