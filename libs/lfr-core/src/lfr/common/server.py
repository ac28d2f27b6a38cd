"""Server bootstrap shared by every service: interceptors, health, reflection, limits,
keepalive, graceful shutdown on SIGTERM.

A service provides a :class:`ServiceParts` (its servicers, dependency probes and clean-up); this
module does the rest, so no service carries its own copy of the plumbing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from lfr.common.errors import ConfigError, LfrError
from lfr.common.interceptors import ErrorAndLoggingInterceptor
from lfr.common.logging import configure_logging, get_logger
from lfr.common.settings import ServiceSettings
from lfr.common.tasks import raise_if_cancelling

log = get_logger("lfr.server")

#: An async check that a dependency answers; raises or returns False when it does not.
DependencyProbe = Callable[[], Awaitable[bool]]


@dataclass
class ServiceParts:
    """What a service contributes to its server."""

    #: Full gRPC service names (e.g. ``lfr.v1.MatchService``), for health and reflection.
    service_names: Sequence[str]
    #: Registers the servicers on the server.
    register: Callable[[aio.Server], None]
    #: Named probes of the service's own dependencies; NOT_SERVING until all pass.
    dependencies: dict[str, DependencyProbe] = field(default_factory=dict)
    #: Background tasks started with the server and cancelled at shutdown.
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()
    #: Called once at shutdown, after the server stopped (close clients, flush).
    close: Callable[[], Awaitable[None]] | None = None


class RunningServer:
    """A started server with its health reporter; ``stop`` is graceful."""

    def __init__(
        self, server: aio.Server, port: int, parts: ServiceParts, settings: ServiceSettings
    ) -> None:
        self.server = server
        self.port = port
        self.parts = parts
        self.settings = settings
        self.health = health_aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self.dependency_status: dict[str, bool] = {}

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def _set_all(self, status: int) -> None:
        for name in ("", *self.parts.service_names):
            await self.health.set(name, status)

    async def check_dependencies(self) -> bool:
        healthy = True
        for name, probe in self.parts.dependencies.items():
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancel that
                # arrives as the probe finishes, and shutdown would then wait forever.
                async with asyncio.timeout(self.settings.health_interval_s):
                    ok = bool(await probe())
            except Exception:  # a probe that fails for any reason means "not reachable"
                ok = False
            if self.dependency_status.get(name) != ok:
                log.info("dependency", dependency=name, reachable=ok)
            self.dependency_status[name] = ok
            healthy = healthy and ok
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if healthy
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._set_all(status)
        return healthy

    async def _watch_dependencies(self) -> None:
        while True:
            await self.check_dependencies()
            raise_if_cancelling()
            await asyncio.sleep(self.settings.health_interval_s)

    async def start(self) -> None:
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.start()
        self._tasks.append(asyncio.create_task(self._watch_dependencies()))
        for job in self.parts.background:
            self._tasks.append(asyncio.create_task(job()))

    async def stop(self, grace_s: float | None = None) -> None:
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.server.stop(self.settings.shutdown_grace_s if grace_s is None else grace_s)
        if self.parts.close is not None:
            await self.parts.close()


def build_server(settings: ServiceSettings, parts: ServiceParts) -> RunningServer:
    """Create (not start) the server; binds ``settings.port`` (0 = a free port, for tests)."""
    options = [
        ("grpc.max_receive_message_length", settings.max_receive_message_bytes),
        ("grpc.max_send_message_length", settings.max_send_message_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.so_reuseport", 0),
    ]
    server = aio.server(interceptors=[ErrorAndLoggingInterceptor()], options=options)
    parts.register(server)
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot listen on {address}: {exc}; is the port already in use?"
        ) from None
    if port == 0:
        raise ConfigError(f"cannot listen on {address}: the port is already in use; choose another")
    running = RunningServer(server, port, parts, settings)
    health_pb2_grpc.add_HealthServicer_to_server(running.health, server)
    reflection.enable_server_reflection(
        (
            *parts.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    return running


async def serve(settings: ServiceSettings, parts: ServiceParts) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    running = build_server(settings, parts)
    await running.start()
    log.info("listening", address=running.address, services=list(parts.service_names))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", grace_s=settings.shutdown_grace_s)
    await running.stop()
    log.info("stopped")


def run_service(
    name: str,
    load: Callable[[], ServiceSettings],
    make_parts: Callable[[ServiceSettings], Awaitable[ServiceParts]],
) -> None:
    """Entry point body for every service: settings, logging, serve; bad config exits 2."""
    try:
        settings = load()
    except LfrError as exc:
        print(f"lfr-{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(name, level=settings.log_level, fmt=settings.log_format)

    async def main() -> None:
        parts = await make_parts(settings)
        await serve(settings, parts)

    try:
        asyncio.run(main())
    except LfrError as exc:
        print(f"lfr-{name}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
