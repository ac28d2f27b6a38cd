"""Client channels to other lfr services: message limits, keepalive, and a retry policy for
idempotent methods only. Every call still passes its own deadline (``timeout=``)."""

from __future__ import annotations

import json
from collections.abc import Iterable

from grpc import aio

from lfr.common.settings import MiB

#: Default per-call deadline, seconds, for calls between services.
DEFAULT_DEADLINE_S = 5.0


def _retry_config(idempotent: Iterable[tuple[str, str]]) -> str:
    names = [{"service": service, "method": method} for service, method in idempotent]
    if not names:
        return json.dumps({"methodConfig": []})
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": names,
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.05s",
                        "maxBackoff": "1s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def open_channel(
    address: str,
    *,
    idempotent_methods: Iterable[tuple[str, str]] = (),
    max_message_bytes: int = 16 * MiB,
    reconnect_max_s: float = 2.0,
    channel_retries: bool = True,
) -> aio.Channel:
    """An insecure aio channel to ``host:port``; ``idempotent_methods`` are (service, method)
    pairs, e.g. ``("lfr.v1.AlertService", "Publish")``, that gRPC may retry on UNAVAILABLE.

    The reconnect backoff is capped at ``reconnect_max_s``: gRPC's default grows to 120 s, so
    after a peer's outage calls would keep failing long after it came back. Callers that retry
    themselves (within a deadline of their own) pass ``channel_retries=False``.
    """
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", int(reconnect_max_s * 1000)),
        ("grpc.enable_retries", 1 if channel_retries else 0),
    ]
    if channel_retries:
        options.append(("grpc.service_config", _retry_config(idempotent_methods)))
    return aio.insecure_channel(address, options=options)
