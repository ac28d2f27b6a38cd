"""Health probes for the components the runtime supervises.

A probe is plain data (kind + target) so ``lfr status`` can rebuild it from the state file in
another process. Every probe has a short deadline and never raises: it answers (ok, detail).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["HealthProbe", "ProbeKind"]

ProbeKind = Literal["redis", "http", "grpc"]


@dataclass(frozen=True)
class HealthProbe:
    """``redis``: PING and ``FT._LIST`` on a Redis URL (proves RediSearch is loaded);
    ``http``: GET answers 200 (Triton's ``/v2/health/ready``);
    ``grpc``: ``grpc.health.v1`` Check of the whole server answers SERVING."""

    kind: ProbeKind
    target: str

    def check(self, timeout: float = 1.0) -> tuple[bool, str]:
        try:
            if self.kind == "redis":
                return _check_redis(self.target, timeout)
            if self.kind == "http":
                return _check_http(self.target, timeout)
            return _check_grpc(self.target, timeout)
        except Exception as exc:  # a probe reports, it never fails the caller
            return False, f"{type(exc).__name__}: {exc}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "target": self.target}

    @classmethod
    def from_json(cls, data: dict[str, str]) -> HealthProbe:
        kind = data["kind"]
        if kind not in ("redis", "http", "grpc"):
            raise ValueError(f"unknown probe kind {kind!r}")
        return cls(kind=kind, target=data["target"])  # type: ignore[arg-type]


def _check_redis(url: str, timeout: float) -> tuple[bool, str]:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
        client.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
    except redis.ResponseError as exc:
        return False, f"RediSearch not loaded ({exc})"
    except redis.RedisError as exc:
        return False, f"unreachable ({type(exc).__name__})"
    finally:
        client.close()
    return True, "PONG, FT._LIST ok"


def _check_http(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"unreachable ({type(exc).__name__})"
    return (status == 200), f"HTTP {status}"


def _check_grpc(addr: str, timeout: float) -> tuple[bool, str]:
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            return False, f"unreachable ({code.name if code else 'error'})"
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    return resp.status == health_pb2.HealthCheckResponse.SERVING, name
