"""Where the evaluation finds the suite: a private one it starts, or the one ``lfr up`` runs.

The private suite is what ``lfr evaluate`` uses by default: Redis (vector search), Triton (the
repo's models) and the alert and watchlist services, each on a free port in a temporary folder,
all stopped afterwards — nothing of the evaluation is left in a running suite. The watchlist
service needs the alert service (it owns the audit log); match and ingest are not needed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from lfr_cli.runtime import Ports, RuntimeConfig
from lfr_cli.testing import ComponentInstance, RedisInstance, ServiceInstance, TritonInstance

__all__ = ["Endpoints", "embedded_suite", "running_suite"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    watchlist_addr: str
    redis_url: str
    triton_url: str


def running_suite(
    environ: Mapping[str, str] | None = None,
    *,
    watchlist_addr: str | None = None,
    redis_url: str | None = None,
    triton_url: str | None = None,
) -> Endpoints:
    """The addresses ``lfr up`` uses (its ``LFR_*_PORT`` settings), each overridable."""
    config = RuntimeConfig.from_env(os.environ if environ is None else environ)
    ports: Ports = config.ports
    host = config.host
    return Endpoints(
        watchlist_addr=watchlist_addr or f"{host}:{ports.watchlist}",
        redis_url=redis_url or f"redis://{host}:{ports.redis}/0",
        triton_url=triton_url or f"{host}:{ports.triton_grpc}",
    )


@contextlib.contextmanager
def embedded_suite(
    work_dir: Path | None = None, *, say: Callable[[str], None] | None = None
) -> Iterator[Endpoints]:
    """Start Redis, Triton, alert and watchlist privately; stop them on the way out. The
    temporary folder (logs, AOF) is removed unless a start-up failed (its logs are kept)."""
    report = say or (lambda _msg: None)
    own_dir = work_dir is None
    base = Path(tempfile.mkdtemp(prefix="lfr-evaluate-")) if work_dir is None else work_dir
    started: list[ComponentInstance] = []
    ok = False
    try:
        report("starting a private Redis ...")
        redis_server = RedisInstance(base / "redis", appendfsync="everysec")
        started.append(redis_server.start())
        report("starting a private Triton (loading the face models) ...")
        triton = TritonInstance(base / "triton")
        started.append(triton.start())
        report("starting the alert and watchlist services ...")
        alert = ServiceInstance("alert", {"REDIS_URL": redis_server.url}, log_dir=base / "logs")
        started.append(alert.start())
        watchlist = ServiceInstance(
            "watchlist",
            {
                "REDIS_URL": redis_server.url,
                "TRITON_URL": triton.url,
                "ALERT_ADDR": alert.addr,
            },
            log_dir=base / "logs",
        )
        started.append(watchlist.start())
        ok = True
        yield Endpoints(watchlist.addr, redis_server.url, triton.url)
    finally:
        for instance in reversed(started):
            with contextlib.suppress(Exception):
                instance.terminate()
        if own_dir and ok:
            shutil.rmtree(base, ignore_errors=True)
        elif own_dir:
            report(f"start-up logs kept in {base}")
