"""The one interceptor maps the error hierarchy to statuses, for unary and streaming RPCs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
from grpc import aio

from lfr.common import errors
from lfr.common.server import RunningServer, ServiceParts, build_server
from lfr.common.settings import ServiceSettings
from lfr.v1 import match_pb2, match_pb2_grpc


class Raising(match_pb2_grpc.MatchServiceServicer):
    """Raises whatever the request's camera_id names."""

    failures: dict[str, BaseException] = {
        "invalid": errors.InvalidArgument("embedding must have 128 values", reason="BAD_EMBEDDING"),
        "precondition": errors.FailedPrecondition("no deployment", reason="NO_DEPLOYMENT"),
        "unavailable": errors.Unavailable("alert service unreachable"),
        "bug": ZeroDivisionError("secret detail"),
        "todo": NotImplementedError(),
    }

    async def Match(self, request: match_pb2.MatchRequest, context: Any) -> match_pb2.MatchResponse:
        if request.camera_id in self.failures:
            raise self.failures[request.camera_id]
        return match_pb2.MatchResponse(request_id=request.request_id)

    async def MatchStream(
        self, request_iterator: AsyncIterator[match_pb2.MatchRequest], context: Any
    ) -> AsyncIterator[match_pb2.MatchResponse]:
        async for request in request_iterator:
            if request.camera_id in self.failures:
                raise self.failures[request.camera_id]
            yield match_pb2.MatchResponse(request_id=request.request_id)

    async def GetStats(self, request: Any, context: Any) -> match_pb2.MatchStats:
        raise NotImplementedError


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    def register(srv: aio.Server) -> None:
        match_pb2_grpc.add_MatchServiceServicer_to_server(Raising(), srv)

    running = build_server(ServiceSettings(port=0), ServiceParts(["lfr.v1.MatchService"], register))
    await running.start()
    yield running
    await running.stop(0)


@pytest.mark.parametrize(
    ("camera", "code", "reason", "text"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "BAD_EMBEDDING", "128 values"),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION, "NO_DEPLOYMENT", "no deployment"),
        ("unavailable", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", "unreachable"),
        ("bug", grpc.StatusCode.INTERNAL, None, "internal error"),
        ("todo", grpc.StatusCode.UNIMPLEMENTED, None, "Match"),
    ],
)
async def test_errors_map_to_statuses(
    server: RunningServer, camera: str, code: grpc.StatusCode, reason: str | None, text: str
) -> None:
    async with aio.insecure_channel(server.address) as channel:
        stub = match_pb2_grpc.MatchServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as info:
            await stub.Match(match_pb2.MatchRequest(camera_id=camera), timeout=5)
        assert info.value.code() == code
        assert text in (info.value.details() or "")
        assert "secret detail" not in (info.value.details() or "")
        trailing: dict[str, Any] = dict(cast(Any, info.value.trailing_metadata()) or ())
        if reason is not None:
            assert trailing.get("lfr-reason") == reason

        with pytest.raises(aio.AioRpcError) as stream_info:
            call = stub.MatchStream(
                iter(
                    [
                        match_pb2.MatchRequest(camera_id="ok"),
                        match_pb2.MatchRequest(camera_id=camera),
                    ]
                ),
                timeout=5,
            )
            received = [r.request_id async for r in call]
            assert received == [""], "the first, good request must be answered"
        assert stream_info.value.code() == code

        ok = await stub.Match(match_pb2.MatchRequest(camera_id="ok", request_id="r1"), timeout=5)
        assert ok.request_id == "r1"


async def test_unhealthy_dependency_means_not_serving() -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reachable = {"redis": False}

    async def probe() -> bool:
        return reachable["redis"]

    running = build_server(
        ServiceSettings(port=0),
        ServiceParts(["lfr.v1.MatchService"], lambda s: None, dependencies={"redis": probe}),
    )
    await running.start()
    try:
        async with aio.insecure_channel(running.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="lfr.v1.MatchService")
            assert (
                await health.Check(request, timeout=5)
            ).status == health_pb2.HealthCheckResponse.NOT_SERVING
            reachable["redis"] = True
            await running.check_dependencies()
            assert (
                await health.Check(request, timeout=5)
            ).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await running.stop(0)


async def test_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(errors.ConfigError, match=f"127.0.0.1:{port}.*in use"):
            build_server(ServiceSettings(port=port), ServiceParts([], lambda s: None))


async def test_stop_returns_even_when_a_probe_swallows_the_cancel() -> None:
    """A dependency client that eats CancelledError (as redis-py can while connecting) must not
    make graceful shutdown wait forever."""
    import asyncio
    import contextlib

    probing = asyncio.Event()

    async def swallowing_probe() -> bool:
        probing.set()
        with contextlib.suppress(asyncio.CancelledError):  # lost, as in the client library bug
            await asyncio.sleep(0.5)
        return True

    settings = ServiceSettings(port=0, health_interval_s=1.0)
    running = build_server(
        settings,
        ServiceParts(["lfr.v1.MatchService"], lambda s: None, dependencies={"x": swallowing_probe}),
    )
    await running.start()
    await probing.wait()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            await running.stop(0)
    assert loop.time() - started < 2.5, "stop() waited on a health loop that lost its cancel"
