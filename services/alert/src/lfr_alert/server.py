"""Wires the alert service: dependencies in, servicer registered, server built."""

from __future__ import annotations

from lfr.common.server import RunningServer, ServiceParts
from lfr.common.server import build_server as build_grpc_server
from lfr.v1 import alert_pb2_grpc

from lfr_alert.servicer import AlertServiceServicer
from lfr_alert.settings import AlertSettings

SERVICE_NAME = "lfr.v1.AlertService"


async def make_parts(settings: AlertSettings) -> ServiceParts:
    servicer = AlertServiceServicer()  # type: ignore[abstract]  # skeleton: base raises UNIMPLEMENTED

    def register(server: object) -> None:
        alert_pb2_grpc.add_AlertServiceServicer_to_server(servicer, server)  # type: ignore[arg-type]

    return ServiceParts(service_names=[SERVICE_NAME], register=register)


async def build_server(settings: AlertSettings) -> RunningServer:
    """Build (not start) the server; ``settings.port = 0`` binds a free port."""
    return build_grpc_server(settings, await make_parts(settings))
