"""DESIGN §1.2, non-matches leave no trace: the match service runs as a real process (fresh
working directory and TMPDIR, its log to a file) against the real Redis; 1,000 non-matching
probes are streamed through it; then Redis' keys, the AOF, SLOWLOG, Redis' own log, the
service's log and metrics, and the disk are searched for the probes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lfr.v1 import match_pb2, match_pb2_grpc
from lfr_cli.process import free_port
from lfr_cli.testing import RedisInstance
from tests.integration.match_support import (
    Deployment,
    DoubleServer,
    LeakDetector,
    Vectors,
    add_entry,
    alert_double,
    create_index,
    unit_vectors,
    watchlist_double,
)

pytestmark = pytest.mark.integration

PROBES = 1000
WL = "wl-privacy"


def _redis_state(client: redis.Redis) -> dict[bytes, Any]:
    """Every key with its type and content."""
    state: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        state[key] = (kind, client.hgetall(key) if kind == b"hash" else client.dump(key))
    return state


def _files_opened_for_writing(pid: int) -> set[str]:
    """Regular files the process holds open with O_WRONLY or O_RDWR."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            flags = next(
                int(line.split()[1], 8)
                for line in Path(f"/proc/{pid}/fdinfo/{fd}").read_text().splitlines()
                if line.startswith("flags:")
            )
        except (FileNotFoundError, StopIteration):
            continue
        if target.startswith("/") and not target.startswith("/dev/") and flags & 0o3:
            found.add(target)
    return found


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        body: bytes = reply.read()
        return body


async def _wait_serving(address: str, process: asyncio.subprocess.Process, log: Path) -> None:
    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError("match service exited:\n" + _read(log))
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("match service never became SERVING:\n" + _read(log))


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


def test_the_leak_detector_finds_what_it_looks_for() -> None:
    probes = unit_vectors(3, seed=5)
    detector = LeakDetector(probes)
    raw = probes[1].astype("<f4").tobytes()
    assert detector.in_bytes(b"xx" + raw[20:36] + b"yy") >= 1  # 16 bytes, odd alignment
    assert detector.in_bytes(unit_vectors(1, seed=6)[0].tobytes()) == 0
    value = float(probes[2][17])
    for text in (f"v={value!r}", f"[{value:.6g}, 0.5]", f"{np.float32(value)}", raw[:8].hex()):
        assert detector.in_text(text), text
    assert not detector.in_text('{"latency_ms": 0.537, "timestamp": "2026-01-01T10:00:40.042662Z"}')


async def _probes(vectors: Vectors) -> AsyncIterator[match_pb2.MatchRequest]:
    for i, vector in enumerate(vectors):
        yield match_pb2.MatchRequest(
            request_id=f"p-{i}",
            camera_id="cam-privacy",
            embedding=vector.tolist(),
            crop_jpeg=b"\xff\xd8" + vector.tobytes(),  # the crop carries the bytes too
            model_version="m",
        )


async def test_non_matches_leave_no_trace(
    redis_client: redis.Redis, redis_server: RedisInstance, tmp_path: Path
) -> None:
    create_index(redis_client, WL)
    for i, vector in enumerate(unit_vectors(50, seed=2024)):
        add_entry(redis_client, WL, f"subject-{i}", vector)
    probes = unit_vectors(PROBES, seed=9090)
    detector = LeakDetector(probes)

    watchlist, alert = watchlist_double(), alert_double()
    watchlist.deployments.append(Deployment("dep-privacy", WL, ["cam-privacy"], threshold=0.92))
    peers = DoubleServer(watchlist=watchlist, alert=alert)
    await peers.start()

    # A hostile start: Redis logs every command to SLOWLOG and user data in its own log.
    original = str(redis_client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"])
    redis_client.config_set("slowlog-log-slower-than", 0)
    redis_client.config_set("hide-user-data-from-log", "no")
    redis_client.slowlog_reset()

    cwd, tmpdir, logs = tmp_path / "cwd", tmp_path / "tmp", tmp_path / "logs"
    for folder in (cwd, tmpdir, logs):
        folder.mkdir()
    log_path = logs / "match.log"
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LFR_MATCH_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        {
            "LFR_MATCH_PORT": str(port),
            "LFR_MATCH_REDIS_URL": redis_server.url,
            "LFR_MATCH_WATCHLIST_ADDR": peers.address,
            "LFR_MATCH_ALERT_ADDR": peers.address,
            "LFR_MATCH_METRICS_PORT": str(metrics_port),
            "LFR_MATCH_LOG_LEVEL": "debug",
            "LFR_MATCH_MIN_THRESHOLD": "0.5",  # synthetic vectors
            "LFR_MATCH_LOG_FORMAT": "json",
            "TMPDIR": str(tmpdir),
            "TEMP": str(tmpdir),
            "TMP": str(tmpdir),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    before = _redis_state(redis_client)
    aof_before = redis_server.aof_bytes()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lfr_match", cwd=cwd, env=env, stdout=log_fd, stderr=log_fd
        )
    finally:
        os.close(log_fd)
    try:
        address = f"127.0.0.1:{port}"
        await _wait_serving(address, process, log_path)
        async with aio.insecure_channel(address) as channel:
            stub = match_pb2_grpc.MatchServiceStub(channel)
            replies = [r async for r in stub.MatchStream(_probes(probes), timeout=120)]
            stats = await stub.GetStats(match_pb2.GetMatchStatsRequest(), timeout=5)
        metrics_text = await asyncio.to_thread(_fetch, f"http://127.0.0.1:{metrics_port}/metrics")
        writable = _files_opened_for_writing(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = await asyncio.wait_for(process.wait(), timeout=30)
        await peers.stop()
        slowlog = redis_client.slowlog_get(100_000)
        slowlog_setting = redis_client.config_get("slowlog-log-slower-than")
        redis_client.config_set("slowlog-log-slower-than", original)

    # The run did what it should: every probe decided, none matched, the service exited cleanly.
    assert exit_code == 0, _read(log_path)
    assert {r.error.reason for r in replies} == {""}, {r.error.message for r in replies}
    assert [r.outcome for r in replies] == [match_pb2.MATCH_OUTCOME_NO_MATCH] * PROBES
    assert (stats.probes, stats.non_matches, stats.matches) == (PROBES, PROBES, 0)
    assert stats.knn_latency.count == PROBES
    assert alert.calls == 0
    assert b"lfr_match_outcomes_total" in metrics_text

    # Redis: the same keys with the same content, an AOF without a new byte, SLOWLOG off and
    # holding no query, nothing in Redis' own log.
    assert _redis_state(redis_client) == before
    aof_after = redis_server.aof_bytes()
    assert aof_after == aof_before
    assert detector.anywhere(aof_after) == []
    assert slowlog_setting["slowlog-log-slower-than"] == "-1"
    slowlog_blob = b"\n".join(entry["command"] for entry in slowlog)
    assert b"KNN" not in slowlog_blob and b"FT.SEARCH" not in slowlog_blob
    assert detector.anywhere(slowlog_blob) == []
    assert detector.anywhere(redis_server.log_text().encode()) == []

    # The service's log (every line of the run, debug level), metrics and disk.
    log_bytes = log_path.read_bytes()
    assert b'"event": "listening"' in log_bytes  # the log captured the run
    assert b"match stream ended" in log_bytes
    assert detector.anywhere(log_bytes) == []
    assert detector.anywhere(metrics_text) == []
    assert list(cwd.iterdir()) == [] and list(tmpdir.iterdir()) == []
    assert writable <= {str(log_path)}
