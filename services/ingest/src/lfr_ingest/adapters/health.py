"""Is a peer service SERVING? (grpc.health.v1), used as a dependency probe."""

from __future__ import annotations

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def is_serving(channel: aio.Channel, service: str, *, timeout_s: float) -> bool:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
    )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
