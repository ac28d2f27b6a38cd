"""Shared fixtures: the real Redis, the real Triton and lfr services, each on free ports in a
temporary folder, started by the test run itself (see ``lfr_cli.testing``).

* ``redis_server`` (session): a :class:`~lfr_cli.testing.RedisInstance` — ``.url``, ``.port``,
  ``.aof_path``, ``.aof_bytes()``, ``.client()``, ``.kill9()``, ``.restart()``. A test that
  kills it should restart it; ``redis_client`` restarts it anyway if it is down.
* ``redis_client`` (function): a client on ``redis_server``, flushed before the test.
* ``triton_server`` (session): a :class:`~lfr_cli.testing.TritonInstance` serving ``models/``;
  ``.url`` is the gRPC address. Start-up loads every model, so it is shared by the session.
* ``start_service`` (function) / ``session_start_service`` (session): ``start(name, env)`` →
  a running :class:`~lfr_cli.testing.ServiceInstance` (``.addr``, ``.terminate()``,
  ``.kill9()``, ``.restart()``), stopped when the fixture's scope ends.
* ``free_port()``: a port nothing listens on.

Every process is stopped at the end of its scope, on failure too, and at interpreter exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from lfr_cli.process import free_port
from lfr_cli.testing import RedisInstance, ServiceStarter, TritonInstance

__all__ = ["ServiceStarter", "free_port"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisInstance]:
    instance = RedisInstance(tmp_path_factory.mktemp("redis"))
    try:
        yield instance.start()
    finally:
        instance.terminate()


@pytest.fixture
def redis_client(redis_server: RedisInstance) -> Iterator[redis.Redis]:
    if not redis_server.running():  # an earlier test killed it without restarting
        redis_server.restart()
    client = redis_server.client()
    client.flushall()  # also drops RediSearch indexes
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonInstance]:
    instance = TritonInstance(tmp_path_factory.mktemp("triton"))
    try:
        yield instance.start()
    finally:
        instance.terminate()


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[ServiceStarter]:
    starter = ServiceStarter(tmp_path / "services")
    try:
        yield starter
    finally:
        starter.close()


@pytest.fixture(scope="session")
def session_start_service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceStarter]:
    starter = ServiceStarter(tmp_path_factory.mktemp("services"))
    try:
        yield starter
    finally:
        starter.close()
