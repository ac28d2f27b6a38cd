"""The supervisor's process handling with stand-in processes (no Redis/Triton needed)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from lfr_cli.health import HealthProbe
from lfr_cli.process import (
    ManagedProcess,
    ProcessRecord,
    ProcessSpec,
    StartupError,
    free_port,
    group_pids,
    log_tail,
    pid_alive,
    start_token,
)
from lfr_cli.runtime import Runtime, RuntimeConfig


def spec(
    tmp_path: Path,
    name: str,
    code: str,
    *,
    port: int | None = None,
    timeout: float = 10.0,
) -> ProcessSpec:
    port = port or free_port()
    return ProcessSpec(
        name=name,
        argv=[sys.executable, "-c", code],
        env=dict(os.environ),
        log_path=tmp_path / "logs" / f"{name}.log",
        probe=HealthProbe("http", f"http://127.0.0.1:{port}/"),
        listen=f"127.0.0.1:{port}",
        ports=(port,),
        startup_timeout=timeout,
        stop_grace=2.0,
    )


def http_server_code(port: int) -> str:
    # HTTPServer sets SO_REUSEADDR, so a restart on the same port works despite TIME_WAIT.
    return (
        "import http.server\n"
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()\n"
    )


# A parent that forks a child which ignores SIGTERM: only the group SIGKILL ends it.
STUBBORN_FAMILY = (
    "import os, signal, subprocess, sys, time\n"
    "subprocess.Popen([sys.executable, '-c',"
    " 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
    "print('family started', flush=True)\n"
    "time.sleep(600)\n"
)


def test_stop_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    proc = ManagedProcess(spec(tmp_path, "family", STUBBORN_FAMILY))
    record = proc.start()
    deadline = time.monotonic() + 10
    while len(group_pids(record.pgid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = group_pids(record.pgid)
    assert len(members) == 2
    proc.stop(grace=0.5)
    assert group_pids(record.pgid) == []
    assert not any(pid_alive(pid) for pid in members)


def test_record_stop_from_another_process_view(tmp_path: Path) -> None:
    # `lfr down` in a fresh process only has the state file's record, not the Popen.
    proc = ManagedProcess(spec(tmp_path, "family", STUBBORN_FAMILY))
    record = ProcessRecord.from_json(proc.start().to_json())
    record.stop(grace=0.5)
    assert group_pids(record.pgid) == []
    assert proc.popen is not None and proc.popen.wait(timeout=5) is not None


def test_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    me = os.getpid()
    stale = ProcessRecord(
        name="old",
        pid=me,
        pgid=os.getpgid(me),
        start_token="1",  # not our start time: the PID now belongs to someone else
        listen="-",
        log_path=tmp_path / "x.log",
        probe=HealthProbe("grpc", "127.0.0.1:1"),
    )
    assert start_token(me) != "1"
    assert stale.reused() and not stale.alive()
    stale.stop(grace=0.1)  # must not kill the test process
    assert pid_alive(me)


def test_exit_during_startup_shows_the_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('line one'); print('fatal: no model', flush=True); sys.exit(3)"
    proc = ManagedProcess(spec(tmp_path, "broken", code))
    proc.start()
    with pytest.raises(StartupError) as exc:
        proc.wait_ready()
    msg = str(exc.value)
    assert msg.splitlines()[0].startswith("broken exited with code 3 during start-up")
    assert "fatal: no model" in msg and str(proc.spec.log_path) in msg


def test_unhealthy_until_timeout(tmp_path: Path) -> None:
    proc = ManagedProcess(spec(tmp_path, "silent", "import time; time.sleep(600)", timeout=0.5))
    proc.start()
    try:
        with pytest.raises(StartupError, match=r"silent not healthy after 0s \(unreachable"):
            proc.wait_ready()
    finally:
        proc.stop()
    assert not proc.running()


def test_log_tail_shows_only_the_latest_start(tmp_path: Path) -> None:
    port = free_port()
    proc = ManagedProcess(spec(tmp_path, "web", http_server_code(port), port=port))
    proc.start()
    proc.wait_ready()
    proc.stop()
    proc.spec.log_path.open("a").write("old noise\n")
    proc.start()
    proc.wait_ready()
    proc.stop()
    assert "old noise" not in log_tail(proc.spec.log_path)
    assert proc.spec.log_path.read_text().count("=== lfr: starting web") == 2


def test_failed_up_stops_what_it_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    good = spec(tmp_path, "first", http_server_code(port), port=port)
    bad = spec(tmp_path, "second", "import sys; print('bad config', flush=True); sys.exit(1)")
    rt = Runtime(RuntimeConfig(home=tmp_path / "home"))
    monkeypatch.setattr(rt, "plan", lambda: [good, bad])
    monkeypatch.setattr(rt, "_port_settings", lambda: iter([]))
    with pytest.raises(StartupError, match="bad config"):
        rt.up()
    assert rt.records() == []  # state cleared
    assert not rt.state_path.exists()
    # The healthy first component was stopped again.
    assert HealthProbe("http", f"http://127.0.0.1:{port}/").check(0.5)[0] is False


def test_runtime_up_status_down_with_stand_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = [free_port(), free_port()]
    specs = [spec(tmp_path, f"web{i}", http_server_code(p), port=p) for i, p in enumerate(ports)]
    rt = Runtime(RuntimeConfig(home=tmp_path / "home"))
    monkeypatch.setattr(rt, "plan", lambda: specs)
    monkeypatch.setattr(rt, "_port_settings", lambda: iter([]))
    statuses = rt.up()
    assert [(s.name, s.healthy) for s in statuses] == [("web0", True), ("web1", True)]
    assert (rt.home / ".gitignore").read_text().strip().endswith("*")
    # A fresh Runtime (as `lfr status` in another process) sees the same from the state file.
    other = Runtime(RuntimeConfig(home=tmp_path / "home"))
    assert [s.healthy for s in other.status()] == [True, True]
    pids = [r.pid for r in other.records()]
    assert [r.name for r in other.down()] == ["web0", "web1"]
    assert not any(pid_alive(pid) for pid in pids)
    assert other.status() == []
    # The original handles see their processes gone too (reaped, no zombies).
    rt.down()
