"""The whole suite for end-to-end tests: a private Redis that logs every command to SLOWLOG, the
session's Triton, and the four services as real processes, each with its own working and temp
folder so that anything a service writes besides its log can be found."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lfr_cli.process import ManagedProcess
from lfr_cli.synth.driver import Endpoints
from lfr_cli.testing import RedisInstance, ServiceInstance, TritonInstance

#: Start order: each service only needs what was started before it.
ORDER = ("alert", "watchlist", "match", "ingest")


@dataclass
class Suite:
    redis: RedisInstance
    triton: TritonInstance
    services: dict[str, ServiceInstance]
    workdirs: dict[str, Path]  #: each service's cwd (holds its log and nothing else)
    tmpdirs: dict[str, Path]  #: each service's TMPDIR

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(
            ingest=self.services["ingest"].addr,
            watchlist=self.services["watchlist"].addr,
            alert=self.services["alert"].addr,
        )


def _service(name: str, env: dict[str, str], root: Path) -> tuple[ServiceInstance, Path, Path]:
    workdir, tmpdir = root / name, root / f"{name}-tmp"
    tmpdir.mkdir(parents=True)
    instance = ServiceInstance(name, {**env, "LOG_LEVEL": "debug"}, log_dir=workdir)
    # TMPDIR has no service prefix, which ServiceInstance would add: set it on the spec itself.
    spec = instance.process.spec
    extra = {"TMPDIR": str(tmpdir), "TEMP": str(tmpdir), "TMP": str(tmpdir)}
    instance.process = ManagedProcess(dataclasses.replace(spec, env={**spec.env, **extra}))
    return instance, workdir, tmpdir


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory, triton_server: TritonInstance
) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp("e2e")
    redis = RedisInstance(root / "redis", slowlog_log_slower_than=0).start()
    started: list[ServiceInstance] = []
    try:
        with redis.client() as client:
            client.config_set("slowlog-max-len", 100_000)
            client.config_set("hide-user-data-from-log", "no")
        addrs: dict[str, str] = {}
        links = {
            "alert": {"REDIS_URL": redis.url, "COOLDOWN_S": "5"},
            "watchlist": {"REDIS_URL": redis.url, "TRITON_URL": triton_server.url},
            "match": {"REDIS_URL": redis.url},
            # Every frame processed (no sampling, a queue deep enough for the whole clip), so
            # the outcome does not depend on how busy the machine is; faces-seen audit every 2 s.
            "ingest": {
                "TRITON_URL": triton_server.url,
                "AUDIT_INTERVAL_S": "2",
                "TARGET_FPS": "0",
                "QUEUE_SIZE": "64",
            },
        }
        services, workdirs, tmpdirs = {}, {}, {}
        for name in ORDER:
            env = dict(links[name])
            for peer in ("alert", "watchlist", "match"):
                if peer in addrs and peer != name:
                    env[f"{peer.upper()}_ADDR"] = addrs[peer]
            instance, workdirs[name], tmpdirs[name] = _service(name, env, root / "services")
            started.append(instance)
            instance.start()
            services[name] = instance
            addrs[name] = instance.addr
        yield Suite(redis, triton_server, services, workdirs, tmpdirs)
    finally:
        for instance in reversed(started):
            instance.terminate()
        redis.terminate()
