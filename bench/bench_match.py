"""Benchmark: the match service's KNN query in Redis (FLAT and HNSW) against brute force in numpy.

    .venv/bin/python bench/bench_match.py                     # starts its own Redis (no AOF)
    .venv/bin/python bench/bench_match.py --sizes 1000 10000  # fewer sizes
    .venv/bin/python bench/bench_match.py --url redis://127.0.0.1:6379/0   # a running Redis

Random unit vectors (128-d) are enrolled per the index contract (one hash per vector, the
``expires_at``/``category`` fields) under one prefix indexed twice, once FLAT and once HNSW
(M 16, EF_CONSTRUCTION 200: RediSearch's defaults), growing to 1k, 10k and 100k entries.
"Service query" rows go through the service's own adapter (``RedisVectorIndex.knn``: the
``expires_at`` pre-filter, k = 5, DIALECT 2, EF_RUNTIME for HNSW, its guard on), so the latency
is what a probe pays; the other rows send a plain ``*=>[KNN ...]`` for comparison.

Per size and method it prints (Markdown, for docs/PERFORMANCE.md):

* KNN latency p50 / p99 over the query set, one query at a time;
* probes/s one at a time, and with 8 queries in flight (a MatchStream's default concurrency);
* recall@1 against exact search, for random probes (no true neighbour: the hard case) and for
  probes of an enrolled subject (cosine 0.9 to one entry: the matching case);
* numpy brute force (``entries @ probe``, argmax) in this process as the baseline, and the
  ratio of Redis' p50 to it.

Takes a few minutes on 2 cores (building HNSW at 100k dominates). Not a test: nothing asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import redis
import redis.asyncio as aioredis
from common import cpu_model, percentile

from lfr.common import schema
from lfr_cli.process import free_port
from lfr_cli.redis_server import RedisOptions, redis_command, redis_url
from lfr_match.redis_index import RedisVectorIndex
from lfr_match.settings import MatchSettings

F32 = npt.NDArray[np.float32]
PREFIX = "bench:entry:"
K = 5
IN_FLIGHT = 8


def unit(n: int, seed: int) -> F32:
    v = np.random.default_rng(seed).standard_normal((n, schema.EMBEDDING_DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def near(rows: F32, cos: float, seed: int) -> F32:
    """Unit vectors at cosine ``cos`` to each row."""
    noise = unit(len(rows), seed).astype(np.float64)
    base = rows.astype(np.float64)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = cos * base + np.sqrt(1 - cos * cos) * noise
    result: F32 = (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
    return result


def create_indexes(client: redis.Redis) -> dict[str, str]:
    names = {"FLAT": "bench:idx:flat", "HNSW": "bench:idx:hnsw"}
    common = ["TYPE", "FLOAT32", "DIM", str(schema.EMBEDDING_DIM), "DISTANCE_METRIC", "COSINE"]
    for algorithm, name in names.items():
        cast(Any, client).execute_command(
            "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", PREFIX,
            "SCHEMA", schema.EMBEDDING_FIELD, "VECTOR", algorithm, str(len(common)), *common,
            "entry_id", "TAG", "expires_at", "NUMERIC", "category", "NUMERIC",
        )  # fmt: skip
    return names


def enrol(client: redis.Redis, vectors: F32, start: int) -> float:
    """Add entries ``start ..`` (both indexes update on write); returns seconds taken."""
    began = time.perf_counter()
    expires = f"{time.time() + 86_400:.0f}"
    pipe = client.pipeline(transaction=False)
    for i, vector in enumerate(vectors, start):
        pipe.hset(
            f"{PREFIX}{i}:0",
            mapping={
                schema.EMBEDDING_FIELD: vector.tobytes(),
                "entry_id": str(i),
                "expires_at": expires,
                "category": 1,
                "subject_ref": f"s{i}",
            },
        )
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    return time.perf_counter() - began


Query = Callable[[F32], Awaitable[str]]


def service_query(index: RedisVectorIndex, name: str) -> Query:
    """What the match service sends: the expiry pre-filter, then KNN."""

    async def query(probe: F32) -> str:
        found = await index.knn(name, probe, K)
        return found[0].entry_id if found else ""

    return query


def unfiltered_query(client: aioredis.Redis, name: str) -> Query:
    """Plain ``*=>[KNN ...]``, for comparison (RediSearch may answer a filtered KNN on HNSW
    by brute force over the filter's result instead of walking the graph)."""

    async def query(probe: F32) -> str:
        reply: Any = await cast(Any, client).execute_command(
            "FT.SEARCH", name, f"*=>[KNN {K} @{schema.EMBEDDING_FIELD} $vec AS d]",
            "PARAMS", "2", "vec", probe.tobytes(), "SORTBY", "d", "RETURN", "1", "entry_id",
            "LIMIT", "0", str(K), "DIALECT", "2",
        )  # fmt: skip
        results = reply[b"results"]
        return results[0][b"extra_attributes"][b"entry_id"].decode() if results else ""

    return query


async def timed(query: Query, probes: F32) -> tuple[list[float], list[str]]:
    latencies, top = [], []
    for probe in probes:
        began = time.perf_counter()
        top.append(await query(probe))
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, top


async def throughput(call: Query, probes: F32) -> float:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(probe: F32) -> None:
        async with gate:
            await call(probe)

    began = time.perf_counter()
    await asyncio.gather(*(one(p) for p in probes))
    return len(probes) / (time.perf_counter() - began)


def numpy_baseline(entries: F32, probes: F32) -> tuple[list[float], float]:
    """Per-probe latencies one at a time, and probes/s when all go in one matrix product."""
    latencies = []
    for probe in probes:
        began = time.perf_counter()
        int(np.argmax(entries @ probe))
        latencies.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    np.argmax(probes @ entries.T, axis=1)
    return latencies, len(probes) / (time.perf_counter() - began)


def recall(got: list[str], exact: list[str]) -> float:
    return sum(g == e for g, e in zip(got, exact, strict=True)) / len(exact)


async def run(url: str, sizes: list[int], queries: int, ef: int, passes: int) -> None:
    client = redis.Redis.from_url(url)
    client.flushall()
    names = create_indexes(client)
    index = RedisVectorIndex(url, hnsw_ef_runtime=ef)
    assert await index.privacy_ok(), "the privacy guard must pass (slowlog off) before querying"
    raw = aioredis.Redis.from_url(url, protocol=3)
    all_entries = unit(max(sizes), seed=1)
    random_probes = unit(queries, seed=2)

    rows = []
    loaded = 0
    for size in sizes:
        load_s = enrol(client, all_entries[loaded:size], loaded)
        loaded = size
        entries = all_entries[:size]
        targets = np.random.default_rng(3).choice(size, queries, replace=False)
        near_probes = near(entries[targets], 0.9, seed=4)

        exact_random = [str(int(np.argmax(entries @ p))) for p in random_probes]
        exact_near = [str(int(np.argmax(entries @ p))) for p in near_probes]
        methods: dict[str, Query] = {
            "Redis FLAT (service query)": service_query(index, names["FLAT"]),
            "Redis FLAT, no expiry filter": unfiltered_query(raw, names["FLAT"]),
            f"Redis HNSW (service query, EF_RUNTIME {ef})": service_query(index, names["HNSW"]),
            "Redis HNSW, no expiry filter, EF_RUNTIME 10 (default)": unfiltered_query(
                raw, names["HNSW"]
            ),
        }
        found: dict[str, tuple[list[str], list[str]]] = {}
        for label, query in methods.items():  # also warms connections and caches
            found[label] = (
                (await timed(query, random_probes))[1],
                (await timed(query, near_probes))[1],
            )
        # Timing passes interleave the methods, and each keeps its best pass (lowest p50): on a
        # shared machine that is the least disturbed one.
        best: dict[str, tuple[list[float], float]] = {}
        for _ in range(passes):
            np_ms, np_batched = numpy_baseline(entries, random_probes)
            if "numpy" not in best or np.median(np_ms) < np.median(best["numpy"][0]):
                best["numpy"] = (np_ms, np_batched)
            for label, query in methods.items():
                ms, _ = await timed(query, random_probes)
                rate = await throughput(query, random_probes)
                if label not in best or np.median(ms) < np.median(best[label][0]):
                    best[label] = (ms, max(rate, best.get(label, ([], 0.0))[1]))
        np_ms, np_batched = best["numpy"]
        np_p50, np_p99 = percentile(np_ms, 50), percentile(np_ms, 99)
        for label in methods:
            ms, rate = best[label]
            top_random, top_near = found[label]
            p50, p99 = percentile(ms, 50), percentile(ms, 99)
            rows.append(
                f"| {size:,} | {label} | {p50:.3f} | {p99:.3f} | "
                f"{1000 / float(np.mean(ms)):,.0f} | {rate:,.0f} | "
                f"{recall(top_random, exact_random):.3f} | {recall(top_near, exact_near):.3f} | "
                f"{p50 / np_p50:,.1f}x |"
            )
        rows.append(
            f"| {size:,} | numpy brute force (in process) | {np_p50:.3f} | {np_p99:.3f} | "
            f"{1000 / float(np.mean(np_ms)):,.0f} | {np_batched:,.0f} (one batched product) | "
            "1.000 | 1.000 | 1.0x |"
        )
        print(f"# {size:,} entries enrolled in {load_s:.1f} s (both indexes)", file=sys.stderr)
    await index.close()
    await raw.aclose()
    client.flushall()
    client.close()

    print(
        f"\nMachine: {cpu_model()}, {queries} queries per cell, best of {passes} passes, k = {K}, "
        "dim 128, cosine.\n"
    )
    print(
        "| entries | method | p50 ms | p99 ms | probes/s (1 at a time) | "
        f"probes/s ({IN_FLIGHT} in flight) | recall@1 random | recall@1 enrolled | p50 vs numpy |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", help="a running Redis with RediSearch (default: start one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--passes", type=int, default=3, help="timing passes; the best is kept")
    parser.add_argument(
        "--ef", type=int, default=MatchSettings().hnsw_ef_runtime, help="the service's EF_RUNTIME"
    )
    args = parser.parse_args()
    sizes = sorted(args.sizes)
    if args.url:
        asyncio.run(run(args.url, sizes, args.queries, args.ef, args.passes))
        return
    with tempfile.TemporaryDirectory(prefix="lfr-bench-match-") as folder:
        port = free_port()
        options = RedisOptions(port=port, appendonly=False, slowlog_log_slower_than=-1)
        with (Path(folder) / "redis.log").open("wb") as log:
            server = subprocess.Popen(redis_command(Path(folder), options), stdout=log, stderr=log)
        try:
            url = redis_url(port)
            for _ in range(100):
                try:
                    redis.Redis.from_url(url).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            asyncio.run(run(url, sizes, args.queries, args.ef, args.passes))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
