"""Start, watch and stop one local process — the building block of the embedded runtime.

Each process runs in its own session (so its own process group): stopping it signals the whole
group, which takes down anything it forked (Triton's Python-backend stubs) and leaves nothing
behind. Output goes to one log file per component. A :class:`ProcessRecord` is what survives in
the state file, so a later ``lfr down`` in another process can stop it safely: it carries the
process start time, and a PID that was reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lfr.common.errors import ConfigError, LfrError
from lfr_cli.health import HealthProbe

__all__ = [
    "ManagedProcess",
    "ProcessRecord",
    "ProcessSpec",
    "StartupError",
    "check_ports_free",
    "free_port",
    "group_pids",
    "log_tail",
    "pid_alive",
    "port_in_use",
    "start_token",
    "stop_group",
]

_PROC = Path("/proc")
_START_MARK = "=== lfr: starting "


class StartupError(LfrError):
    """A component exited or did not become healthy in time; the message holds its log tail."""

    reason = "STARTUP"


@dataclass(frozen=True)
class ProcessSpec:
    """Everything needed to run one component and to know when it is ready."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]  # the complete environment of the child
    log_path: Path
    probe: HealthProbe
    listen: str  # for people: where it listens
    ports: tuple[int, ...] = ()
    cwd: Path | None = None
    startup_timeout: float = 60.0
    stop_grace: float = 10.0


@dataclass(frozen=True)
class ProcessRecord:
    """A started process as written to the state file."""

    name: str
    pid: int
    pgid: int
    start_token: str | None  # /proc start time; None where /proc is not available
    listen: str
    log_path: Path
    probe: HealthProbe
    stop_grace: float = 10.0

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start_token)

    def reused(self) -> bool:
        """True if our PID now belongs to another process (ours ended long ago)."""
        return self.start_token is not None and pid_alive(self.pid) and not self.alive()

    def group_alive(self) -> bool:
        return not self.reused() and bool(group_pids(self.pgid))

    def stop(self, grace: float | None = None) -> None:
        """Stop the group from the record alone (``lfr down`` run by another process).

        The kernel does not hand out a PID still in use as a group id, so a group that still has
        members is ours; a PID that now runs a different process is left alone.
        """
        if self.reused():
            return
        stop_group(
            self.pgid,
            leader=self.pid if self.alive() else None,
            grace=self.stop_grace if grace is None else grace,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "pgid": self.pgid,
            "start_token": self.start_token,
            "listen": self.listen,
            "log_path": str(self.log_path),
            "probe": self.probe.to_json(),
            "stop_grace": self.stop_grace,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            pgid=int(data["pgid"]),
            start_token=None if data.get("start_token") is None else str(data["start_token"]),
            listen=str(data["listen"]),
            log_path=Path(data["log_path"]),
            probe=HealthProbe.from_json(dict(data["probe"])),
            stop_grace=float(data.get("stop_grace", 10.0)),
        )


# --- /proc helpers ---------------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        data = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return data[data.rindex(")") + 2 :].split()


def start_token(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat else None  # field 22: start time in clock ticks since boot


def pid_alive(pid: int, token: str | None = None) -> bool:
    """True if ``pid`` runs, is not a zombie, and (given ``token``) is the process we started."""
    if not _PROC.is_dir():  # no /proc (macOS): signal 0 is the best we have
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return False
    return token is None or stat[19] == token


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    pids = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat and stat[2] == str(pgid) and stat[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def stop_group(
    pgid: int,
    *,
    leader: int | None = None,
    grace: float = 10.0,
    reap: subprocess.Popen[bytes] | None = None,
) -> None:
    """SIGTERM ``leader`` (or the group), wait ``grace`` s for the group to empty, then SIGKILL.

    The leader gets SIGTERM alone first so it can shut its own children down in order (Triton
    stops its backend stubs); whatever is left after the grace period is killed.
    """

    def _signal(sig: signal.Signals, *, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group or leader is None:
                os.killpg(pgid, sig)
            else:
                os.kill(leader, sig)

    def _wait(deadline: float) -> bool:
        while True:
            if reap is not None:
                reap.poll()  # reap our own child so it does not linger as a zombie
            if not group_pids(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    leader_alive = leader is not None and pid_alive(leader)
    _signal(signal.SIGTERM, group=not leader_alive)
    if _wait(time.monotonic() + grace):
        return
    _signal(signal.SIGKILL, group=True)
    if not _wait(time.monotonic() + 5.0):
        raise LfrError(f"process group {pgid} survived SIGKILL: {group_pids(pgid)}")


# --- ports -----------------------------------------------------------------------------------


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on (or holds) ``host:port``.

    SO_REUSEADDR mirrors what the servers themselves do, so a port in TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(ports: Iterable[tuple[str, str, int]], host: str = "127.0.0.1") -> None:
    """Raise :class:`ConfigError` naming the first (component, setting) whose port is taken.

    ``ports`` holds (component, how-to-change-it, port). Duplicates are reported the same way.
    """
    seen: dict[int, str] = {}
    for component, setting, port in ports:
        if port in seen:
            raise ConfigError(
                f"port {port} is configured for both {seen[port]} and {component}; "
                f"give {component} another port with {setting}"
            )
        seen[port] = component
        if port_in_use(port, host):
            raise ConfigError(
                f"port {port} ({component}) is already in use on {host}; stop what listens "
                f"there (is lfr already up? try `lfr down`) or choose another port with {setting}"
            )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# --- logs ------------------------------------------------------------------------------------


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines written since the most recent start marker."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    mark = text.rfind(_START_MARK)
    if mark >= 0:
        text = text[text.find("\n", mark) + 1 :]
    tail = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


# --- the managed process ---------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """One component: ``start`` → ``wait_ready`` → ``stop`` (or ``kill9``/``restart``)."""

    spec: ProcessSpec
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)
    record: ProcessRecord | None = field(default=None, init=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.record.pid if self.record else None

    def start(self) -> ProcessRecord:
        if self.running():
            raise LfrError(f"{self.name} is already running (pid {self.pid})")
        spec = self.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with spec.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"{_START_MARK}{spec.name} at {stamp}: {' '.join(spec.argv)}\n".encode())
            log.flush()
            try:
                self.popen = subprocess.Popen(
                    list(spec.argv),
                    env=dict(spec.env),
                    cwd=spec.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: stop() reaches its children
                )
            except OSError as exc:
                raise ConfigError(
                    f"cannot start {spec.name} ({spec.argv[0]}): {exc.strerror}; "
                    "run `make install` to reinstall lfr"
                ) from None
        pid = self.popen.pid
        self.record = ProcessRecord(
            name=spec.name,
            pid=pid,
            pgid=pid,
            start_token=start_token(pid),
            listen=spec.listen,
            log_path=spec.log_path,
            probe=spec.probe,
            stop_grace=spec.stop_grace,
        )
        return self.record

    def running(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return False

    def check(self, timeout: float = 1.0) -> tuple[bool, str]:
        if not self.running():
            return False, "not running"
        return self.spec.probe.check(timeout)

    def wait_ready(self, timeout: float | None = None) -> float:
        """Poll the probe until it passes; returns seconds waited. Raises :class:`StartupError`
        with the log tail when the process exits or the deadline passes."""
        limit = self.spec.startup_timeout if timeout is None else timeout
        started = time.monotonic()
        delay = 0.05
        detail = "not probed"
        while True:
            if not self.running():
                code = self.popen.returncode if self.popen else None
                raise StartupError(
                    f"{self.name} exited with code {code} during start-up; "
                    f"last lines of {self.spec.log_path}:\n{log_tail(self.spec.log_path)}"
                )
            ok, detail = self.spec.probe.check(timeout=min(2.0, max(limit, 0.1)))
            if ok:
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise StartupError(
                    f"{self.name} not healthy after {limit:.0f}s ({detail}); "
                    f"last lines of {self.spec.log_path}:\n{log_tail(self.spec.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; returns once no process of the group is left."""
        if self.record is None:
            return
        stop_group(
            self.record.pgid,
            leader=self.record.pid,
            grace=self.spec.stop_grace if grace is None else grace,
            reap=self.popen,
        )
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1.0)

    def kill9(self) -> None:
        """SIGKILL the whole group at once (a crash, for tests of durability and recovery)."""
        if self.record is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.record.pgid, signal.SIGKILL)
        stop_group(self.record.pgid, grace=5.0, reap=self.popen)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1.0)

    def restart(self, *, wait: bool = True) -> ProcessRecord:
        """Stop if running, start again with the same spec (same ports, same data)."""
        self.stop()
        record = self.start()
        if wait:
            self.wait_ready()
        return record
