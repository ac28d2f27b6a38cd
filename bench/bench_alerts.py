"""Benchmark: alerts through the alert service vs raw Redis Streams, with 1, 10 and 100
subscribers.

    .venv/bin/python bench/bench_alerts.py               # ~2 minutes on 2 cores
    .venv/bin/python bench/bench_alerts.py --subscribers 1 10 --latency-alerts 50

Starts its own Redis (AOF ``appendfsync always``, as the runtime does) and the alert service as
a separate process (``python -m lfr_alert``); the publisher and all subscribers run in this
process. Two measurements per subscriber count:

* **latency** — alerts published one at a time at a steady pace (well below capacity);
  publish→receive latency is measured per delivery (subscriber x alert), plus the publisher's
  acknowledgement latency (Publish RPC / XADD);
* **throughput** — a burst published with 16 requests in flight; alerts/s is the burst size over
  the time until the last subscriber has the last alert.

Baseline, side by side on the same Redis: the bare mechanism the service is built on — XADD of
an entry carrying the same crop, each subscriber its own connection blocked in XREAD. What the
service adds per alert: validation, routing, one Lua script (idempotency key, cool-down check,
alert hash, stream entry, expiry index, audit record with a SHA-256 hash chain), fan-out to
filtered per-subscriber queues, and protobuf over gRPC both ways. Prints Markdown tables for
docs/PERFORMANCE.md. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from common import cpu_model, percentile
from grpc import aio

from lfr.v1 import alert_pb2, alert_pb2_grpc, common_pb2
from lfr_cli.testing import RedisInstance, ServiceInstance

CROP = bytes(range(256)) * 40  # ~10 KB, the size of a face crop JPEG
IN_FLIGHT = 16
STREAM = "bench:raw"


@dataclass
class Result:
    deliveries_ms: list[float] = field(default_factory=list)
    ack_ms: list[float] = field(default_factory=list)
    alerts_per_s: float = 0.0


class Receivers:
    """Delivery times per (subscriber, event), and a way to wait until all have arrived."""

    def __init__(self, n: int) -> None:
        self.times: list[dict[str, float]] = [{} for _ in range(n)]
        self._changed = asyncio.Event()

    def got(self, index: int, event_id: str) -> None:
        self.times[index][event_id] = time.perf_counter()
        self._changed.set()

    async def wait_all(self, event_ids: Sequence[str], timeout_s: float) -> float:
        """Time the last of ``event_ids`` reached the last subscriber."""
        deadline = time.perf_counter() + timeout_s
        wanted = set(event_ids)
        while any(not wanted <= t.keys() for t in self.times):
            if time.perf_counter() > deadline:
                missing = sum(len(wanted - t.keys()) for t in self.times)
                raise TimeoutError(f"{missing} deliveries missing after {timeout_s} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1)
        return max(t[e] for t in self.times for e in wanted)


async def paced(
    publish: Callable[[str], Awaitable[None]], ids: Sequence[str], rate: float, result: Result
) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, event_id in enumerate(ids):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        sent[event_id] = time.perf_counter()
        await publish(event_id)
        result.ack_ms.append((time.perf_counter() - sent[event_id]) * 1000)
    return sent


async def burst(publish: Callable[[str], Awaitable[None]], ids: Sequence[str]) -> float:
    queue = list(ids)
    start = time.perf_counter()

    async def worker() -> None:
        while queue:
            await publish(queue.pop(0))

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return start


async def measure(
    name: str,
    n: int,
    start_subscribers: Callable[[Receivers], Awaitable[list[asyncio.Task[None]]]],
    publish: Callable[[str], Awaitable[None]],
    *,
    latency_alerts: int,
    rate: float,
    burst_alerts: int,
) -> Result:
    result = Result()
    receivers = Receivers(n)
    tasks = await start_subscribers(receivers)
    try:
        warm = [f"{name}-{n}-warm-{i}" for i in range(5)]
        await paced(publish, warm, rate, Result())
        await receivers.wait_all(warm, 30)
        ids = [f"{name}-{n}-lat-{i}" for i in range(latency_alerts)]
        sent = await paced(publish, ids, rate, result)
        await receivers.wait_all(ids, 60)
        for times in receivers.times:
            result.deliveries_ms += [(times[e] - sent[e]) * 1000 for e in ids]
        ids = [f"{name}-{n}-burst-{i}" for i in range(burst_alerts)]
        start = await burst(publish, ids)
        end = await receivers.wait_all(ids, 300)
        result.alerts_per_s = burst_alerts / (end - start)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return result


# --- the alert service ----------------------------------------------------------------------


def event(event_id: str) -> alert_pb2.MatchEvent:
    return alert_pb2.MatchEvent(
        event_id=event_id,
        deployment_id="dep-bench",
        camera_id="cam-1",
        location="bench",
        watchlist_id="wl-1",
        entry_id=event_id,  # distinct subjects: no cool-down folding
        category=common_pb2.CATEGORY_WANTED_BY_COURTS,
        score=0.9,
        threshold=0.6,
        crop_jpeg=CROP,
    )


async def run_service(addr: str, n: int, args: argparse.Namespace) -> Result:
    channels = [aio.insecure_channel(addr) for _ in range(min(n, 10) + 1)]
    publisher = alert_pb2_grpc.AlertServiceStub(channels[0])

    async def publish(event_id: str) -> None:
        await publisher.Publish(event(event_id), timeout=30)

    async def start(receivers: Receivers) -> list[asyncio.Task[None]]:
        async def follow(index: int) -> None:
            stub = alert_pb2_grpc.AlertServiceStub(channels[1 + index % (len(channels) - 1)])
            call = stub.Subscribe(alert_pb2.SubscribeRequest(subscriber_id=f"sub-{index}"))
            async for alert in call:
                receivers.got(index, alert.event.event_id)

        tasks = [asyncio.create_task(follow(i)) for i in range(n)]
        await asyncio.sleep(1.0)  # all subscribed (new alerts only)
        return tasks

    try:
        return await measure(
            "svc",
            n,
            start,
            publish,
            latency_alerts=args.latency_alerts,
            rate=args.rate,
            burst_alerts=burst_size(n, args),
        )
    finally:
        for ch in channels:
            await ch.close(None)


# --- the baseline: raw Redis Streams --------------------------------------------------------


async def run_raw(url: str, n: int, args: argparse.Namespace) -> Result:
    writer = aioredis.Redis.from_url(url, max_connections=IN_FLIGHT + 1)
    readers = [aioredis.Redis.from_url(url, socket_timeout=10) for _ in range(n)]
    last = await writer.xrevrange(STREAM, "+", "-", count=1)
    start_id = last[0][0] if last else b"0-0"

    async def publish(event_id: str) -> None:
        await writer.xadd(STREAM, {"event_id": event_id, "crop": CROP})

    async def start(receivers: Receivers) -> list[asyncio.Task[None]]:
        async def follow(index: int) -> None:
            position: Any = start_id
            reader = readers[index]
            while not current_task_cancelling():  # redis-py can swallow a cancel on 3.11
                reply: Any = await reader.xread({STREAM: position}, block=1000, count=100)
                for _key, entries in reply or []:
                    for entry_id, fields in entries:
                        receivers.got(index, fields[b"event_id"].decode())
                        position = entry_id

        tasks = [asyncio.create_task(follow(i)) for i in range(n)]
        await asyncio.sleep(0.5)
        return tasks

    try:
        return await measure(
            "raw",
            n,
            start,
            publish,
            latency_alerts=args.latency_alerts,
            rate=args.rate,
            burst_alerts=burst_size(n, args),
        )
    finally:
        await writer.aclose()
        for reader in readers:
            await reader.aclose()


def current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def burst_size(n: int, args: argparse.Namespace) -> int:
    return max(100, int(args.burst_alerts / max(1, n) ** 0.5))


async def main(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="lfr-bench-alerts-") as tmp,
        RedisInstance(Path(tmp) / "redis") as redis_server,
    ):
        if True:
            env = {
                "REDIS_URL": redis_server.url,
                "COOLDOWN_S": "0",
                "SUBSCRIBER_QUEUE_SIZE": "1000000",
                "MAX_SUBSCRIBERS": "1000",
                "LOG_LEVEL": "warning",
            }
            service = ServiceInstance("alert", env, log_dir=Path(tmp) / "logs")
            with service:
                rows = []
                for n in args.subscribers:
                    svc = await run_service(service.addr, n, args)
                    raw = await run_raw(redis_server.url, n, args)
                    rows.append((n, svc, raw))
                    print(f"done: {n} subscriber(s)", flush=True)
    print()
    print(
        f"Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}; Redis AOF appendfsync always; crop "
        f"{len(CROP)} bytes; latency at {args.rate:g} alerts/s, {args.latency_alerts} alerts; "
        f"burst with {IN_FLIGHT} publishes in flight."
    )
    print()
    print(
        "| subscribers | service p50 ms | service p99 ms | raw XADD→XREAD p50 ms | raw p99 ms "
        "| p50 ratio | service alerts/s | raw alerts/s | throughput ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n, svc, raw in rows:
        s50, s99 = percentile(svc.deliveries_ms, 50), percentile(svc.deliveries_ms, 99)
        r50, r99 = percentile(raw.deliveries_ms, 50), percentile(raw.deliveries_ms, 99)
        print(
            f"| {n} | {s50:.2f} | {s99:.2f} | {r50:.2f} | {r99:.2f} | {s50 / r50:.1f}x "
            f"| {svc.alerts_per_s:.0f} | {raw.alerts_per_s:.0f} "
            f"| {svc.alerts_per_s / raw.alerts_per_s:.2f} |"
        )
    print()
    print("| subscribers | Publish ack p50 ms | p99 ms | XADD ack p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for n, svc, raw in rows:
        print(
            f"| {n} | {percentile(svc.ack_ms, 50):.2f} | {percentile(svc.ack_ms, 99):.2f} "
            f"| {percentile(raw.ack_ms, 50):.2f} | {percentile(raw.ack_ms, 99):.2f} |"
        )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--latency-alerts", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0, help="alerts/s while timing latency")
    parser.add_argument(
        "--burst-alerts", type=int, default=1000, help="burst size at 1 subscriber (shrinks as √n)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
