"""Where the suite the harness drives lives: an already running one (addresses from the same
``LFR_*_PORT`` settings as ``lfr up``), or a private embedded one started for the run."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from lfr_cli.runtime import Ports, Runtime, RuntimeConfig
from lfr_cli.synth.driver import Endpoints
from lfr_cli.testing import free_ports

__all__ = ["Suite", "embedded_suite", "running_suite", "terminate_as_interrupt"]


@dataclass(frozen=True)
class Suite:
    endpoints: Endpoints
    triton_url: str
    runtime: Runtime | None = None  #: set when this process started the suite

    @property
    def home(self) -> Path | None:
        return self.runtime.home if self.runtime else None


def _endpoints(ports: Ports, host: str) -> Endpoints:
    return Endpoints(
        ingest=f"{host}:{ports.ingest}",
        watchlist=f"{host}:{ports.watchlist}",
        alert=f"{host}:{ports.alert}",
    )


def running_suite(environ: Mapping[str, str] | None = None, host: str = "127.0.0.1") -> Suite:
    """The suite ``lfr up`` runs, at the ports it uses (``LFR_<NAME>_PORT`` or defaults)."""
    ports = Ports.from_env(os.environ if environ is None else environ)
    return Suite(_endpoints(ports, host), f"{host}:{ports.triton_grpc}")


@contextlib.contextmanager
def embedded_suite(
    progress: Callable[[str], None],
    *,
    home: Path | None = None,
    keep_home: bool = False,
    service_env: Mapping[str, str] | None = None,
) -> Iterator[Suite]:
    """Start Redis, Triton and the four services on free ports in a private state folder
    (a new temp folder unless ``home``), and stop them all on the way out — on errors and
    Ctrl-C too. The temp folder (logs, Redis' AOF with the run's alerts) is deleted unless
    ``keep_home`` or the run failed (then its path is reported)."""
    own_home = home is None
    home = Path(tempfile.mkdtemp(prefix="lfr-suite-")) if home is None else home
    config = RuntimeConfig.from_env(os.environ, home=home, ports=free_ports())
    runtime = Runtime(config)
    env = {
        # Ingest writes its faces-seen counts to the audit log through the alert service; the
        # runtime does not link that address, and the default port is not ours here.
        "LFR_INGEST_ALERT_ADDR": f"{config.host}:{config.ports.alert}",
        **(service_env or {}),
    }
    saved = {k: os.environ.get(k) for k in env}
    failed = True
    try:
        os.environ.update(env)  # the runtime copies os.environ into each service's environment
        try:
            runtime.up(progress=progress)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        yield Suite(
            _endpoints(config.ports, config.host),
            f"{config.host}:{config.ports.triton_grpc}",
            runtime,
        )
        failed = False
    except KeyboardInterrupt:
        failed = False  # the user stopped it: nothing to investigate, clean up
        raise
    finally:
        with _uninterruptible():  # a second Ctrl-C must not leave half the suite running
            progress("stopping the suite ...")
            try:
                runtime.down()
                progress("suite stopped")
            except Exception as exc:  # report it, and still clean up what can be
                progress(f"stopping the suite failed: {exc}")
                failed = True
            if own_home and not keep_home and not failed:
                shutil.rmtree(home, ignore_errors=True)
            elif failed:
                progress(f"logs kept in {home / 'logs'}")


@contextlib.contextmanager
def _uninterruptible() -> Iterator[None]:
    """SIGINT and SIGTERM are ignored for the duration (main thread only)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    except ValueError:  # not the main thread: signals cannot be handled here anyway
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C for the duration, so cleanup (``finally``) runs."""

    def _raise(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
