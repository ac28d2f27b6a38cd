"""The embedded runtime: Redis, Triton and the four services as local processes, no containers.

``Runtime.up`` checks everything it can before starting anything (binaries, ports), then starts
the components in dependency order, waiting for each health check to pass; if one fails, what
was started is stopped again and the failing component's log tail is shown. ``Runtime.down``
stops everything in reverse order. What was started is recorded in ``<home>/state.json`` so
``lfr status`` / ``lfr down`` work from another process.

Layout under the state folder (default ``<checkout>/.lfr``, or ``$LFR_HOME``)::

    state.json            what runs: pid, process group, start time, address, probe, log
    logs/<component>.log  stdout+stderr of each component
    redis/                Redis' working dir (AOF in appendonlydir/)
    triton/               Triton's assembled backend folder
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, Literal, cast

from lfr.common.errors import ConfigError, FailedPrecondition, LfrError
from lfr_cli import triton_server
from lfr_cli.health import HealthProbe
from lfr_cli.process import (
    ManagedProcess,
    ProcessRecord,
    ProcessSpec,
    StartupError,
    check_ports_free,
    log_tail,
)
from lfr_cli.redis_server import (
    APPENDFSYNC_VALUES,
    AppendFsync,
    RedisOptions,
    redis_command,
    redis_url,
)

__all__ = [
    "COMPONENTS",
    "SERVICES",
    "ComponentStatus",
    "Ports",
    "Runtime",
    "RuntimeConfig",
    "default_home",
    "service_env",
]

#: The four services in start order (each only needs what was started before it).
SERVICES: Final = ("alert", "watchlist", "match", "ingest")
COMPONENTS: Final = ("redis", "triton", *SERVICES)
ServiceName = Literal["alert", "watchlist", "match", "ingest"]

#: Which settings each service gets besides HOST, PORT and LOG_FORMAT (its own prefix added).
SERVICE_LINKS: Final[Mapping[str, tuple[str, ...]]] = {
    "alert": ("REDIS_URL",),
    "watchlist": ("REDIS_URL", "TRITON_URL", "ALERT_ADDR"),
    "match": ("REDIS_URL", "WATCHLIST_ADDR", "ALERT_ADDR"),
    "ingest": ("TRITON_URL", "MATCH_ADDR", "WATCHLIST_ADDR", "ALERT_ADDR"),
}

HOME_ENV: Final = "LFR_HOME"
STATE_FILE: Final = "state.json"
LOG_FORMATS: Final = ("json", "console")


@dataclass(frozen=True)
class Ports:
    """TCP ports; each can be set with ``LFR_<FIELD>_PORT`` or ``--<field>-port``."""

    redis: int = 16379
    triton_grpc: int = 18001
    triton_http: int = 18000
    triton_metrics: int = 18002
    alert: int = 50054
    watchlist: int = 50053
    match: int = 50052
    ingest: int = 50051

    @staticmethod
    def env_var(name: str) -> str:
        return f"LFR_{name.upper()}_PORT"

    @staticmethod
    def flag(name: str) -> str:
        return f"--{name.replace('_', '-')}-port"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Ports:
        values: dict[str, int] = {}
        for name in cls.names():
            var = cls.env_var(name)
            raw = environ.get(var)
            if raw is not None and raw.strip():
                values[name] = parse_port(raw, var)
        return cls(**values)

    def setting(self, name: str) -> str:
        return f"{self.env_var(name)} or {self.flag(name)}"


def parse_port(raw: str, setting: str) -> int:
    try:
        port = int(raw.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"{setting}={raw!r} is not a TCP port; set it to a number 1-65535")
    return port


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$LFR_HOME``, else ``.lfr`` in the lfr checkout this runs from, else in the cwd."""
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file() and (parent / "services").is_dir():
            return parent / ".lfr"
    return Path.cwd() / ".lfr"


@dataclass(frozen=True)
class RuntimeConfig:
    home: Path
    ports: Ports = field(default_factory=Ports)
    host: str = "127.0.0.1"
    with_services: bool = True
    appendfsync: AppendFsync = "always"
    #: Off (-1) as in :class:`RedisOptions`: SLOWLOG keeps a KNN query's probe vector.
    slowlog_log_slower_than: int | None = -1
    #: None: ``triton_server.default_model_repository()`` ($LFR_MODEL_REPOSITORY or models/).
    model_repository: Path | None = None
    log_format: str = "json"
    #: Seconds to wait for each component's health check (None: a per-component default).
    startup_timeout: float | None = None
    stop_grace: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RuntimeConfig:
        """Read ``LFR_*`` variables; bad values raise :class:`ConfigError` naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {"home": default_home(env), "ports": Ports.from_env(env)}
        if fsync := env.get("LFR_REDIS_APPENDFSYNC"):
            if fsync not in APPENDFSYNC_VALUES:
                raise ConfigError(
                    f"LFR_REDIS_APPENDFSYNC={fsync!r} is not valid; use one of "
                    f"{', '.join(APPENDFSYNC_VALUES)}"
                )
            values["appendfsync"] = fsync
        slowlog_var = "LFR_REDIS_SLOWLOG_LOG_SLOWER_THAN"
        if slow := env.get(slowlog_var):
            values["slowlog_log_slower_than"] = _parse_int(slow, slowlog_var)
        if log_format := env.get("LFR_LOG_FORMAT"):
            if log_format not in LOG_FORMATS:
                raise ConfigError(
                    f"LFR_LOG_FORMAT={log_format!r} is not valid; use json or console"
                )
            values["log_format"] = log_format
        if timeout := env.get("LFR_STARTUP_TIMEOUT"):
            seconds = _parse_int(timeout, "LFR_STARTUP_TIMEOUT")
            if seconds <= 0:
                raise ConfigError(f"LFR_STARTUP_TIMEOUT={timeout!r} must be a positive number")
            values["startup_timeout"] = float(seconds)
        values.update(overrides)
        return cls(**values)


def _parse_int(raw: str, setting: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{setting}={raw!r} is not an integer; fix or unset it") from None


def service_env(
    name: str,
    ports: Ports,
    *,
    host: str = "127.0.0.1",
    log_format: str = "json",
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of service ``name``: ``base`` (default ``os.environ``) plus its
    ``LFR_<NAME>_*`` settings pointing at the other components."""
    links = {
        "REDIS_URL": redis_url(ports.redis, host),
        "TRITON_URL": f"{host}:{ports.triton_grpc}",
        "WATCHLIST_ADDR": f"{host}:{ports.watchlist}",
        "MATCH_ADDR": f"{host}:{ports.match}",
        "ALERT_ADDR": f"{host}:{ports.alert}",
    }
    prefix = f"LFR_{name.upper()}_"
    env = dict(os.environ if base is None else base)
    env.update(
        {
            f"{prefix}HOST": host,
            f"{prefix}PORT": str(getattr(ports, name)),
            f"{prefix}LOG_FORMAT": log_format,
            "PYTHONUNBUFFERED": "1",  # log lines reach the log file as they happen
        }
    )
    env.update({f"{prefix}{key}": links[key] for key in SERVICE_LINKS[name]})
    return env


def service_argv(name: str) -> list[str]:
    """``python -m lfr_<name>`` with this interpreter, so the service runs in this environment."""
    module = f"lfr_{name}"
    try:
        found = importlib.util.find_spec(f"{module}.__main__") is not None
    except ImportError:
        found = False
    if not found:
        raise ConfigError(
            f"service {name} is not installed (no module {module}.__main__); run `make install`"
        )
    return [sys.executable, "-m", module]


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str
    listen: str
    log_path: Path


_DEFAULT_TIMEOUTS: Final[Mapping[str, float]] = {"redis": 20.0, "triton": 300.0}
_SERVICE_TIMEOUT: Final = 60.0
_TRITON_STOP_GRACE: Final = 20.0


class Runtime:
    """Starts, inspects and stops the embedded suite described by a :class:`RuntimeConfig`."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self._procs: dict[str, ManagedProcess] = {}

    # -- paths -------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self.config.home

    @property
    def state_path(self) -> Path:
        return self.home / STATE_FILE

    def log_path(self, component: str) -> Path:
        return self.home / "logs" / f"{component}.log"

    # -- plan --------------------------------------------------------------------------------

    def plan(self) -> list[ProcessSpec]:
        """Every component to start, in order. Resolving the commands here means a missing
        binary or package is reported before anything starts."""
        cfg, ports, host = self.config, self.config.ports, self.config.host
        specs = [self._redis_spec(), self._triton_spec()]
        if cfg.with_services:
            for name in SERVICES:
                specs.append(
                    ProcessSpec(
                        name=name,
                        argv=service_argv(name),
                        env=service_env(name, ports, host=host, log_format=cfg.log_format),
                        log_path=self.log_path(name),
                        probe=HealthProbe("grpc", f"{host}:{getattr(ports, name)}"),
                        listen=f"{host}:{getattr(ports, name)} (gRPC)",
                        ports=(getattr(ports, name),),
                        cwd=self.home,
                        startup_timeout=cfg.startup_timeout or _SERVICE_TIMEOUT,
                        stop_grace=cfg.stop_grace,
                    )
                )
        return specs

    def _redis_spec(self) -> ProcessSpec:
        cfg, port = self.config, self.config.ports.redis
        options = RedisOptions(
            port=port,
            bind=cfg.host,
            appendfsync=cfg.appendfsync,
            slowlog_log_slower_than=cfg.slowlog_log_slower_than,
        )
        url = redis_url(port, cfg.host)
        return ProcessSpec(
            name="redis",
            argv=redis_command(self.home / "redis", options),
            env=dict(os.environ),
            log_path=self.log_path("redis"),
            probe=HealthProbe("redis", url),
            listen=url,
            ports=(port,),
            cwd=self.home / "redis",
            startup_timeout=cfg.startup_timeout or _DEFAULT_TIMEOUTS["redis"],
            stop_grace=cfg.stop_grace,
        )

    def _triton_spec(self) -> ProcessSpec:
        cfg, ports, host = self.config, self.config.ports, self.config.host
        repo = cfg.model_repository or triton_server.default_model_repository()
        argv, env = triton_server.triton_command(
            repo,
            grpc_port=ports.triton_grpc,
            http_port=ports.triton_http,
            metrics_port=ports.triton_metrics,
            work_dir=self.home / "triton",
        )
        return ProcessSpec(
            name="triton",
            argv=argv,
            env=env,
            log_path=self.log_path("triton"),
            probe=HealthProbe("http", f"http://{host}:{ports.triton_http}/v2/health/ready"),
            listen=(
                f"grpc {host}:{ports.triton_grpc}, http {host}:{ports.triton_http}, "
                f"metrics {host}:{ports.triton_metrics}"
            ),
            ports=(ports.triton_grpc, ports.triton_http, ports.triton_metrics),
            cwd=self.home / "triton",
            startup_timeout=cfg.startup_timeout or _DEFAULT_TIMEOUTS["triton"],
            # Triton unloads each model in turn on SIGTERM (seconds on CPU); let it finish.
            stop_grace=max(cfg.stop_grace, _TRITON_STOP_GRACE),
        )

    def _port_settings(self) -> Iterator[tuple[str, str, int]]:
        ports = self.config.ports
        names = ["redis", "triton_grpc", "triton_http", "triton_metrics"]
        if self.config.with_services:
            names += list(SERVICES)
        for name in names:
            yield name.replace("_", " "), ports.setting(name), getattr(ports, name)

    # -- state -------------------------------------------------------------------------------

    def _load_records(self) -> list[ProcessRecord]:
        try:
            data = json.loads(self.state_path.read_text())
            return [ProcessRecord.from_json(item) for item in data["components"]]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"state file {self.state_path} is unreadable ({exc}); stop leftover processes "
                "by hand and delete it"
            ) from None

    def _save_records(self, records: list[ProcessRecord]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        payload = {"version": 1, "components": [r.to_json() for r in records]}
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(self.state_path)  # atomic: a crash never leaves half a state file

    def _prepare_home(self) -> None:
        for sub in ("logs", "redis", "triton"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        ignore = self.home / ".gitignore"
        if not ignore.exists():
            # Keeps state, logs and the AOF (which may hold alerts) out of git wherever it lives.
            ignore.write_text("# written by lfr: runtime state, never commit it\n*\n")

    # -- lifecycle ---------------------------------------------------------------------------

    def up(self, *, progress: Callable[[str], None] | None = None) -> list[ComponentStatus]:
        """Start every component and wait until each is healthy; all or nothing."""
        say = progress or (lambda _msg: None)
        live = [r for r in self._load_records() if r.group_alive()]
        if live:
            names = ", ".join(f"{r.name} (pid {r.pid})" for r in live)
            raise FailedPrecondition(
                f"lfr is already up in {self.home}: {names}; run `lfr down` first"
            )
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the state folder {self.home} ({exc.strerror}); "
                f"set {HOME_ENV} to a writable folder"
            ) from None
        specs = self.plan()
        check_ports_free(self._port_settings(), self.config.host)
        self._prepare_home()

        records: list[ProcessRecord] = []
        try:
            for spec in specs:
                say(f"starting {spec.name} ...")
                proc = ManagedProcess(spec)
                self._procs[spec.name] = proc
                records.append(proc.start())
                self._save_records(records)  # recorded before waiting: `down` can always find it
                waited = proc.wait_ready()
                say(f"{spec.name} healthy after {waited:.1f}s")
        except BaseException:
            # All or nothing: never leave half a suite running behind an error or Ctrl-C.
            with contextlib.suppress(LfrError):
                self._stop_all(records)
            raise
        return self.status()

    def status(self) -> list[ComponentStatus]:
        """Each recorded component with a live health probe (empty when nothing was started)."""
        result = []
        for record in self._load_records():
            running = record.alive()
            healthy, detail = record.probe.check(timeout=1.0) if running else (False, "stopped")
            result.append(
                ComponentStatus(
                    name=record.name,
                    pid=record.pid,
                    running=running,
                    healthy=healthy,
                    detail=detail,
                    listen=record.listen,
                    log_path=record.log_path,
                )
            )
        return result

    def down(self) -> list[ProcessRecord]:
        """Stop everything recorded, last started first; returns what was recorded."""
        records = self._load_records()
        self._stop_all(records)
        return records

    def _stop_all(self, records: list[ProcessRecord]) -> None:
        errors = []
        for record in reversed(records):
            proc = self._procs.pop(record.name, None)
            try:
                if proc is not None and proc.record == record:
                    proc.stop()  # our own child: also reaped
                else:
                    record.stop()
            except LfrError as exc:
                errors.append(str(exc))
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        if errors:
            raise LfrError("; ".join(errors))

    def records(self) -> list[ProcessRecord]:
        return self._load_records()

    def serve_forever(self, *, poll: float = 0.5) -> None:
        """Block until SIGINT/SIGTERM or until a component dies (then raise with its log tail).
        The caller stops the suite afterwards."""
        stop = False

        def _on_signal(_sig: int, _frame: FrameType | None) -> None:
            nonlocal stop
            stop = True

        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop:
                for record in self._load_records():
                    if not record.alive():
                        raise StartupError(
                            f"{record.name} exited unexpectedly; last lines of "
                            f"{record.log_path}:\n{log_tail(record.log_path)}"
                        )
                time.sleep(poll)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, cast(Any, handler))
