"""Wires the match service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.v1 import match_pb2_grpc

from lfr_match.servicer import MatchServiceServicer
from lfr_match.settings import MatchSettings

SERVICE_NAME = "lfr.v1.MatchService"


async def make_parts(settings: MatchSettings) -> ServiceParts:
    servicer = MatchServiceServicer()  # type: ignore[abstract]  # skeleton: base raises UNIMPLEMENTED

    def register(server: object) -> None:
        match_pb2_grpc.add_MatchServiceServicer_to_server(servicer, server)  # type: ignore[arg-type]

    return ServiceParts(service_names=[SERVICE_NAME], register=register)


async def build_server(settings: MatchSettings) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings))
