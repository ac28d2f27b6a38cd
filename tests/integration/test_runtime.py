"""The embedded runtime for real: Redis with vector search, Triton with the repo's models and the
four services as local processes; then `down` leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
import tritonclient.grpc as triton_grpc
from redis.commands.search.field import VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query

from lfr_cli.health import HealthProbe
from lfr_cli.process import group_pids, pid_alive
from lfr_cli.runtime import COMPONENTS, SERVICES, Ports, Runtime, RuntimeConfig
from lfr_cli.testing import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    rt = Runtime(RuntimeConfig(home=tmp_path_factory.mktemp("lfr-home"), ports=free_ports()))
    try:
        rt.up()
        yield rt
    finally:
        rt.down()


def test_every_component_is_up_and_healthy(runtime: Runtime) -> None:
    statuses = runtime.status()
    assert [s.name for s in statuses] == list(COMPONENTS)
    unhealthy = {s.name: s.detail for s in statuses if not s.healthy}
    assert not unhealthy
    for s in statuses:
        assert s.log_path.is_file() and s.log_path.parent == runtime.home / "logs"


def test_redis_runs_knn_on_a_flat_vector_index(runtime: Runtime) -> None:
    client = redis.Redis(port=runtime.config.ports.redis, socket_timeout=5)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(50, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = client.ft("idx:test")
    try:
        index.create_index(
            [
                VectorField(
                    "embedding",
                    "FLAT",
                    {"TYPE": "FLOAT32", "DIM": 128, "DISTANCE_METRIC": "COSINE"},
                )
            ],
            definition=IndexDefinition(  # type: ignore[no-untyped-call]
                prefix=["test:"], index_type=IndexType.HASH
            ),
        )
        for i, vec in enumerate(vectors):
            client.hset(f"test:{i}", mapping={"embedding": vec.tobytes()})
        probe = (vectors[17] + 0.01 * rng.normal(size=128)).astype(np.float32)
        query = (
            Query("*=>[KNN 3 @embedding $q AS dist]")
            .sort_by("dist")
            .return_fields("dist")
            .dialect(2)
        )
        result = index.search(query, query_params={"q": probe.tobytes()})
        assert result.total == 3
        assert result.docs[0].id == "test:17"
        assert float(result.docs[0].dist) < 0.01
    finally:
        index.dropindex(delete_documents=True)
        client.close()


def test_triton_reports_a_model_ready(runtime: Runtime) -> None:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{runtime.config.ports.triton_grpc}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        index = client.get_model_repository_index(as_json=True)
        ready = [m["name"] for m in index.get("models", []) if m.get("state") == "READY"]
        assert ready, index
        assert all(client.is_model_ready(name) for name in ready)
    finally:
        client.close()


@pytest.mark.parametrize("service", SERVICES)
def test_service_health_is_serving(runtime: Runtime, service: str) -> None:
    addr = f"127.0.0.1:{getattr(runtime.config.ports, service)}"
    assert HealthProbe("grpc", addr).check(timeout=5) == (True, "SERVING")


def test_down_leaves_no_process_behind(runtime: Runtime) -> None:
    # Runs last in this module: everything the suite started, children (Triton stubs) included.
    records = runtime.records()
    pids = {pid for r in records for pid in group_pids(r.pgid)}
    assert len(pids) > len(records)  # Triton's Python-backend stubs are in its group
    runtime.down()
    assert not runtime.state_path.exists()
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert runtime.status() == []


def test_lfr_up_status_down_from_the_command_line(tmp_path: Path) -> None:
    env = dict(os.environ, LFR_HOME=str(tmp_path / "home"))
    ports = free_ports()
    env.update({Ports.env_var(name): str(getattr(ports, name)) for name in Ports.names()})
    script = Path(sys.executable).with_name("lfr")  # the installed console script
    lfr = [str(script)] if script.exists() else [sys.executable, "-m", "lfr_cli.main"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*lfr, *args], env=env, capture_output=True, text=True, timeout=600)

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr
        for name in COMPONENTS:
            assert name in up.stdout
        assert "logs/redis.log" in up.stdout
        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count("healthy") == len(COMPONENTS)
        again = run("up")  # a second `up` on the same state folder is refused
        assert again.returncode == 2
        assert "already up" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1
    finally:
        state = Runtime(RuntimeConfig(home=tmp_path / "home")).records()
        pids = {pid for r in state for pid in group_pids(r.pgid)}
        down = run("down")
    assert down.returncode == 0, down.stderr
    assert "stopped redis" in down.stdout
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert run("status").returncode == 3
