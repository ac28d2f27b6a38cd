"""The shared fixtures themselves: real processes that restart, recover and leave nothing."""

from __future__ import annotations

import pytest
import redis

from lfr_cli.health import HealthProbe
from lfr_cli.process import group_pids
from lfr_cli.testing import RedisInstance, TritonInstance
from tests.conftest import ServiceStarter

pytestmark = pytest.mark.integration


def test_redis_client_starts_clean(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("fixture:probe", "1")


def test_redis_client_is_flushed_between_tests(redis_client: redis.Redis) -> None:
    assert redis_client.get("fixture:probe") is None


def test_redis_survives_kill9_through_the_aof(redis_server: RedisInstance) -> None:
    with redis_server.client() as client:
        client.flushall()
        client.xadd("alerts:test", {"subject": "s1"})
    pid = redis_server.pid
    redis_server.kill9()
    assert not redis_server.running()
    redis_server.restart()
    assert redis_server.pid != pid
    with redis_server.client() as client:
        assert client.xlen("alerts:test") == 1
        client.flushall()
    assert b"alerts:test" in redis_server.aof_bytes()


def test_triton_fixture_is_ready(triton_server: TritonInstance) -> None:
    assert triton_server.url.startswith("127.0.0.1:")
    assert HealthProbe("http", f"{triton_server.http_url}/v2/health/ready").check(5)[0]


@pytest.mark.parametrize("service", ["alert", "match"])
def test_start_service_kill9_and_restart(
    service: str, redis_server: RedisInstance, start_service: ServiceStarter
) -> None:
    instance = start_service(service, {"REDIS_URL": redis_server.url})
    assert HealthProbe("grpc", instance.addr).check(5) == (True, "SERVING")
    assert instance.pid is not None
    instance.kill9()
    assert group_pids(instance.pid) == []
    assert HealthProbe("grpc", instance.addr).check(0.5)[0] is False
    instance.restart()
    assert HealthProbe("grpc", instance.addr).check(5) == (True, "SERVING")
    instance.terminate()
    assert not instance.running()
