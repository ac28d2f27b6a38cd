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
) -> aio.Channel:
    """An insecure aio channel to ``host:port``; ``idempotent_methods`` are (service, method)
    pairs, e.g. ``("lfr.v1.AlertService", "Publish")``, that gRPC may retry on UNAVAILABLE."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", _retry_config(idempotent_methods)),
    ]
    return aio.insecure_channel(address, options=options)
