"""Single real components on free ports, for integration and end-to-end tests.

``tests/conftest.py`` builds its fixtures on these; a test that needs its own private instance
(e.g. to SIGKILL it without disturbing others) can use the classes directly::

    with RedisInstance(tmp_path) as redis_server:
        redis_server.kill9()
        redis_server.restart()          # same port and dir: the AOF is replayed

Every instance started here is also stopped at interpreter exit, so a crashed test run leaves
no process behind.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from lfr_cli import triton_server
from lfr_cli.health import HealthProbe
from lfr_cli.process import ManagedProcess, ProcessSpec, free_port
from lfr_cli.redis_server import AppendFsync, RedisOptions, redis_command, redis_url
from lfr_cli.runtime import SERVICE_LINKS, Ports, service_argv

__all__ = [
    "ComponentInstance",
    "RedisInstance",
    "ServiceInstance",
    "ServiceStarter",
    "TritonInstance",
    "free_port",
    "free_ports",
]

HOST = "127.0.0.1"

# Safety net for a test run that dies between start and teardown.
_STARTED: dict[int, ManagedProcess] = {}


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_STARTED.values()):
        with contextlib.suppress(Exception):
            proc.kill9()


class ComponentInstance:
    """One supervised process: ``start`` (waits until healthy), ``terminate``, ``kill9``,
    ``restart``. Usable as a context manager that always stops it."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.process = ManagedProcess(spec)

    @property
    def log_path(self) -> Path:
        return self.process.spec.log_path

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def running(self) -> bool:
        return self.process.running()

    def healthy(self, timeout: float = 1.0) -> bool:
        return self.process.check(timeout)[0]

    def start(self, *, wait: bool = True) -> Self:
        _STARTED[id(self.process)] = self.process
        self.process.start()
        if wait:
            try:
                self.process.wait_ready()
            except BaseException:
                self.terminate()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> float:
        return self.process.wait_ready(timeout)

    def terminate(self, grace: float | None = None) -> None:
        """SIGTERM (graceful shutdown), SIGKILL after the grace period."""
        self.process.stop(grace)
        _STARTED.pop(id(self.process), None)

    stop = terminate

    def kill9(self) -> None:
        """SIGKILL the process and its children at once, like a crash."""
        self.process.kill9()

    def restart(self, *, wait: bool = True) -> Self:
        """Start again with the same command, ports and data folder."""
        if self.running():
            self.terminate()
        return self.start(wait=wait)

    def __enter__(self) -> Self:
        if not self.running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()


class RedisInstance(ComponentInstance):
    """Redis 8 + RediSearch with AOF (``appendfsync always`` by default) in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: AppendFsync = "always",
        slowlog_log_slower_than: int | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = redis_url(self.port, HOST)
        options = RedisOptions(
            port=self.port,
            bind=HOST,
            appendfsync=appendfsync,
            slowlog_log_slower_than=slowlog_log_slower_than,
        )
        super().__init__(
            ProcessSpec(
                name="redis",
                argv=redis_command(self.data_dir, options),
                env=dict(os.environ),
                log_path=self.data_dir / "redis.log",
                probe=HealthProbe("redis", self.url),
                listen=self.url,
                ports=(self.port,),
                cwd=self.data_dir,
                startup_timeout=startup_timeout,
                stop_grace=5.0,
            )
        )

    @property
    def aof_path(self) -> Path:
        """Redis 7+ keeps the AOF as several files in this folder (base, incr, manifest)."""
        return self.data_dir / "appendonlydir"

    def aof_bytes(self) -> bytes:
        """Everything in the AOF folder, concatenated (for "no probe bytes on disk" checks)."""
        if not self.aof_path.is_dir():
            return b""
        return b"".join(p.read_bytes() for p in sorted(self.aof_path.iterdir()) if p.is_file())

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new client; close it when done (``with redis_server.client() as r: ...``)."""
        kwargs.setdefault("socket_timeout", 10.0)
        return redis.Redis.from_url(self.url, **kwargs)


class TritonInstance(ComponentInstance):
    """The real Triton server serving ``model_repository`` (default: the repo's ``models/``)."""

    def __init__(
        self,
        work_dir: Path,
        *,
        model_repository: Path | None = None,
        models: Sequence[str] | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.grpc_port, self.http_port, self.metrics_port = _distinct_free_ports(3)
        repo = model_repository or triton_server.default_model_repository()
        argv, env = triton_server.triton_command(
            repo,
            grpc_port=self.grpc_port,
            http_port=self.http_port,
            metrics_port=self.metrics_port,
            work_dir=self.work_dir,
            models=models,
        )
        #: gRPC address, as the services' ``TRITON_URL`` wants it.
        self.url = f"{HOST}:{self.grpc_port}"
        self.http_url = f"http://{HOST}:{self.http_port}"
        super().__init__(
            ProcessSpec(
                name="triton",
                argv=argv,
                env=env,
                log_path=self.work_dir / "triton.log",
                probe=HealthProbe("http", f"{self.http_url}/v2/health/ready"),
                listen=self.url,
                ports=(self.grpc_port, self.http_port, self.metrics_port),
                cwd=self.work_dir,
                startup_timeout=startup_timeout,
                stop_grace=20.0,
            )
        )


class ServiceInstance(ComponentInstance):
    """One lfr service (``python -m lfr_<name>``) on a free port.

    ``env`` keys without an ``LFR_`` prefix get the service's prefix, so
    ``{"REDIS_URL": url}`` becomes ``LFR_MATCH_REDIS_URL`` for ``match``. Inherited
    ``LFR_<NAME>_*`` variables are dropped so the developer's shell cannot leak in.
    """

    def __init__(
        self,
        name: str,
        env: Mapping[str, str] | None = None,
        *,
        log_dir: Path,
        port: int | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if name not in SERVICE_LINKS:
            raise ValueError(f"unknown service {name!r}; one of {', '.join(SERVICE_LINKS)}")
        self.service = name
        self.port = port or free_port()
        self.addr = f"{HOST}:{self.port}"
        prefix = f"LFR_{name.upper()}_"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(prefix)}
        full_env.update(
            {
                f"{prefix}HOST": HOST,
                f"{prefix}PORT": str(self.port),
                f"{prefix}LOG_FORMAT": "json",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for key, value in (env or {}).items():
            full_env[key if key.startswith("LFR_") else prefix + key] = value
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            ProcessSpec(
                name=name,
                argv=service_argv(name),
                env=full_env,
                log_path=log_dir / f"{name}-{self.port}.log",
                probe=HealthProbe("grpc", self.addr),
                listen=self.addr,
                ports=(self.port,),
                cwd=log_dir,
                startup_timeout=startup_timeout,
                stop_grace=10.0,
            )
        )


class ServiceStarter:
    """Starts services for one fixture scope and stops all of them when it ends."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ServiceInstance] = []

    def __call__(
        self, name: str, env: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> ServiceInstance:
        """Start service ``name`` (``env`` keys may omit the ``LFR_<NAME>_`` prefix) and, with
        ``wait``, return once its health check answers SERVING."""
        instance = ServiceInstance(name, env, log_dir=self.log_dir)
        self.started.append(instance)
        return instance.start(wait=wait)

    def close(self) -> None:
        # Last started first, like `lfr down`; one failure must not keep others running.
        errors: list[BaseException] = []
        for instance in reversed(self.started):
            try:
                instance.terminate()
            except Exception as exc:
                errors.append(exc)
        self.started.clear()
        if errors:
            raise errors[0]


def free_ports() -> Ports:
    """A full set of distinct free ports for :class:`~lfr_cli.runtime.Runtime` in tests."""
    return Ports(**dict(zip(Ports.names(), _distinct_free_ports(len(Ports.names())), strict=True)))


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports
