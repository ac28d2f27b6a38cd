"""In-process gRPC checks (port 0) that every service serves health and reflection, and gives
every RPC of its contract a real status: a real answer, or UNIMPLEMENTED (never a fake success,
never INTERNAL) for behaviour that belongs to a later issue.

A service whose RPCs are implemented moves to its own test module, with injected fakes.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from lfr.common.server import RunningServer

# Services still on their skeleton; the others have their own in-process test modules.
SKELETON_SERVICES = ["ingest", "match", "watchlist", "alert"]


@pytest.fixture(params=SKELETON_SERVICES)
async def running(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    name = request.param
    settings_mod = importlib.import_module(f"lfr_{name}.settings")
    server_mod = importlib.import_module(f"lfr_{name}.server")
    settings_cls = next(
        v
        for k, v in vars(settings_mod).items()
        if k.endswith("Settings") and k != "ServiceSettings"
    )
    server: RunningServer = await server_mod.build_server(settings_cls(port=0))
    await server.start()
    await server.check_dependencies()
    yield server
    await server.stop(0)


async def test_health_is_serving(running: RunningServer) -> None:
    async with aio.insecure_channel(running.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", *running.parts.service_names):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_lists_the_service(running: RunningServer) -> None:
    async with aio.insecure_channel(running.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names: set[str] = set()
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
            names |= {s.name for s in reply.list_services_response.service}
    assert set(running.parts.service_names) <= names
    assert "grpc.health.v1.Health" in names


async def test_every_rpc_answers_with_a_real_status(running: RunningServer) -> None:
    pool = descriptor_pool.Default()
    async with aio.insecure_channel(running.address) as channel:
        for service_name in running.parts.service_names:
            service = pool.FindServiceByName(service_name)
            for method in service.methods:
                request_cls = message_factory.GetMessageClass(method.input_type)
                response_cls = message_factory.GetMessageClass(method.output_type)
                path = f"/{service_name}/{method.name}"
                kwargs: dict[str, Any] = {
                    "request_serializer": request_cls.SerializeToString,
                    "response_deserializer": response_cls.FromString,
                }
                with pytest.raises(grpc.RpcError) as info:
                    if method.client_streaming and method.server_streaming:
                        call = channel.stream_stream(path, **kwargs)(
                            iter([request_cls()]), timeout=5
                        )
                        async for _ in call:
                            pass
                    elif method.client_streaming:
                        await channel.stream_unary(path, **kwargs)(iter([request_cls()]), timeout=5)
                    elif method.server_streaming:
                        async for _ in channel.unary_stream(path, **kwargs)(
                            request_cls(), timeout=5
                        ):
                            pass
                    else:
                        await channel.unary_unary(path, **kwargs)(request_cls(), timeout=5)
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, path
                assert method.name in (info.value.details() or ""), path
