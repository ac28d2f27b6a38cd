"""``lfr up`` / ``lfr status`` / ``lfr down``: the embedded runtime from the command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lfr_cli.commands import Subparsers
from lfr_cli.redis_server import APPENDFSYNC_VALUES
from lfr_cli.runtime import (
    ComponentStatus,
    Ports,
    Runtime,
    RuntimeConfig,
    default_home,
    parse_port,
)

#: First in `lfr --help`: the suite has to be up before anything else.
ORDER = 10


def add_parser(subparsers: Subparsers) -> None:
    up = subparsers.add_parser(
        "up",
        help="start Redis, Triton and the four services; wait until all are healthy",
        description="Start the suite as local processes and wait until every health check "
        "passes. Settings also come from LFR_* environment variables; flags win.",
    )
    _add_common(up)
    up.add_argument(
        "--no-services", action="store_true", help="start only Redis and Triton (no services)"
    )
    up.add_argument(
        "--foreground",
        action="store_true",
        help="stay attached; Ctrl-C or SIGTERM stops everything",
    )
    up.add_argument(
        "--appendfsync",
        choices=APPENDFSYNC_VALUES,
        help="Redis AOF fsync policy (default always; env LFR_REDIS_APPENDFSYNC)",
    )
    ports = up.add_argument_group("ports (env LFR_<NAME>_PORT)")
    for name in Ports.names():
        ports.add_argument(
            Ports.flag(name),
            dest=f"port_{name}",
            metavar="PORT",
            help=f"default {getattr(Ports(), name)}",
        )
    up.set_defaults(handler=run_up)

    status = subparsers.add_parser("status", help="show each component's health")
    _add_common(status)
    status.set_defaults(handler=run_status)

    down = subparsers.add_parser("down", help="stop everything `lfr up` started")
    _add_common(down)
    down.set_defaults(handler=run_down)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--home", type=Path, help="state folder (default: $LFR_HOME or <checkout>/.lfr)"
    )


def config_from_args(args: argparse.Namespace) -> RuntimeConfig:
    overrides: dict[str, object] = {}
    if getattr(args, "home", None):
        overrides["home"] = args.home.expanduser().resolve()
    if getattr(args, "no_services", False):
        overrides["with_services"] = False
    if getattr(args, "appendfsync", None):
        overrides["appendfsync"] = args.appendfsync
    config = RuntimeConfig.from_env(os.environ, **overrides)
    ports = {
        name: parse_port(raw, Ports.flag(name))
        for name in Ports.names()
        if (raw := getattr(args, f"port_{name}", None)) is not None
    }
    return dataclasses.replace(config, ports=dataclasses.replace(config.ports, **ports))


def _home_only(args: argparse.Namespace) -> RuntimeConfig:
    # status/down read everything from the state file: a bad port variable must not block them.
    home = args.home.expanduser().resolve() if args.home else default_home()
    return RuntimeConfig(home=home)


def _say(message: str) -> None:
    print(f"lfr: {message}", file=sys.stderr, flush=True)


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def format_table(statuses: Sequence[ComponentStatus]) -> str:
    rows = [("COMPONENT", "PID", "HEALTH", "LISTENS", "LOG")]
    for s in statuses:
        health = "healthy" if s.healthy else f"UNHEALTHY ({s.detail})"
        rows.append((s.name, str(s.pid or "-"), health, s.listen, _relative(s.log_path)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def run_up(args: argparse.Namespace) -> int:
    runtime = Runtime(config_from_args(args))
    statuses = runtime.up(progress=_say)
    print(format_table(statuses))
    if not args.foreground:
        print(f"lfr is up; state in {_relative(runtime.home)}. Stop it with `lfr down`.")
        return 0 if all(s.healthy for s in statuses) else 1
    print("lfr is up in the foreground; press Ctrl-C to stop it.", flush=True)
    try:
        runtime.serve_forever()
    finally:
        _say("stopping ...")
        runtime.down()
        _say("stopped")
    return 0


def run_status(args: argparse.Namespace) -> int:
    runtime = Runtime(_home_only(args))
    statuses = runtime.status()
    if not statuses:
        print(f"lfr is not running (no state in {_relative(runtime.home)})")
        return 3
    print(format_table(statuses))
    return 0 if all(s.healthy for s in statuses) else 1


def run_down(args: argparse.Namespace) -> int:
    runtime = Runtime(_home_only(args))
    records = runtime.down()
    if not records:
        print(f"nothing to stop (no state in {_relative(runtime.home)})")
        return 0
    for record in reversed(records):
        print(f"stopped {record.name} (pid {record.pid})")
    return 0
