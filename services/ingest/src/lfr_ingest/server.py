"""Wires the ingest service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.v1 import ingest_pb2_grpc

from lfr_ingest.servicer import IngestServiceServicer
from lfr_ingest.settings import IngestSettings

SERVICE_NAME = "lfr.v1.IngestService"


async def make_parts(settings: IngestSettings) -> ServiceParts:
    servicer = IngestServiceServicer()  # type: ignore[abstract]  # skeleton: base raises UNIMPLEMENTED

    def register(server: object) -> None:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)  # type: ignore[arg-type]

    return ServiceParts(service_names=[SERVICE_NAME], register=register)


async def build_server(settings: IngestSettings) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings))
