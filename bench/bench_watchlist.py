"""Benchmark: watch-list enrolment throughput, and what an entry costs in Redis.

    .venv/bin/python bench/bench_watchlist.py                 # starts its own Redis and Triton
    .venv/bin/python bench/bench_watchlist.py --sizes 1000    # fewer index sizes

Part 1, enrolment (images/s): ``Enrol`` RPCs to the watchlist service in this process (real
Triton, real Redis with AOF ``appendfsync always`` as in production), one image per request and
five per request, one request at a time and 4 in flight. Baseline, side by side: the same images
sent straight to Triton (``FaceAnalyzer.analyze``) without the service. Images: 10 JPEG views of
Grace Hopper and the astronaut (crops and rescales) from the registry-shipped sample photos, or
the lfw-dev people photos when ``../shared/datasets/lfw-dev`` is there (``--photos`` to choose).

Part 2, memory per entry: N synthetic entries (one 128-d vector each) written through the
service's store (``RedisStore.add_entry``, one MULTI/EXEC per entry) into a FLAT and an HNSW
watch list; per entry: Redis ``used_memory`` growth, the vector index's own size
(``FT.INFO vector_index_sz_mb``), the key count, and write rate. Baseline: the 512 bytes of the
raw float32 vector.

Not a test: nothing asserted. A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import cpu_model
from grpc import aio

from lfr.common.schema import index_name
from lfr.common.timeutil import now, to_timestamp
from lfr.inference import TritonFaceAnalyzer
from lfr.v1 import common_pb2, watchlist_pb2, watchlist_pb2_grpc
from lfr_cli.sample_photos import photo_bytes
from lfr_cli.testing import RedisInstance, TritonInstance
from lfr_watchlist.model import AuditEvent, EntryRecord, Governance, WatchlistRecord
from lfr_watchlist.redis_store import OUTBOX_KEY, RedisStore
from lfr_watchlist.server import Deps, build_server
from lfr_watchlist.settings import WatchlistSettings
from lfr_watchlist.testing import RecordingAuditSink

LFW = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lfw-dev" / "people"
IN_FLIGHT = 4


def sample_views() -> list[bytes]:
    views = []
    for name in ("grace_hopper", "astronaut"):
        image = cv2.imdecode(np.frombuffer(photo_bytes(name), np.uint8), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        for i, scale in enumerate((1.0, 0.9, 0.8, 0.7, 0.6)):
            dy, dx = (i * h) // 40, (i * w) // 40
            crop = image[dy : h - dy, dx : w - dx]
            resized = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            ok, buffer = cv2.imencode(".jpg", resized)
            assert ok
            views.append(buffer.tobytes())
    return views


def lfw_photos(limit: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted(LFW.glob("*/*.jpg"))[:limit]]


def governance() -> watchlist_pb2.Governance:
    return watchlist_pb2.Governance(
        category=common_pb2.CATEGORY_WANTED_BY_COURTS,
        legal_basis_ref="bench",
        image_source="bench",
        approver="bench",
        expires_at=to_timestamp(now() + timedelta(days=1)),
    )


async def run_concurrently(
    jobs: Sequence[Callable[[], Awaitable[Any]]], in_flight: int
) -> tuple[float, list[float]]:
    """Wall seconds for all jobs, and each job's latency in ms."""
    queue = list(jobs)
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            job = queue.pop(0)
            start = time.perf_counter()
            await job()
            latencies.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - start, latencies


async def enrolment(triton_url: str, redis_url: str, images: list[bytes], count: int) -> list[str]:
    settings = WatchlistSettings(port=0, redis_url=redis_url, triton_url=triton_url)
    analyzer = TritonFaceAnalyzer(triton_url)
    deps = Deps(RedisStore.from_url(redis_url), analyzer, RecordingAuditSink())
    server = await build_server(settings, deps)
    await server.start()
    rows = []
    async with aio.insecure_channel(server.address) as channel:
        stub = watchlist_pb2_grpc.WatchlistServiceStub(channel)
        await stub.CreateWatchlist(watchlist_pb2.CreateWatchlistRequest(watchlist_id="bench"))
        # Only photos holding exactly one usable face can be enrolled (LFW has group shots).
        usable = [
            image
            for image in images
            if len(
                [
                    f
                    for f in await analyzer.analyze(image)
                    if f.quality.size_px >= settings.min_face_px
                ]
            )
            == 1
        ]
        images = (usable * (count // len(usable) + 1))[:count]
        for image in images[:2]:  # warm-up: models, connections
            await stub.Enrol(
                watchlist_pb2.EnrolRequest(
                    watchlist_id="bench", images=[image], governance=governance()
                )
            )

        def enrol_job(batch: list[bytes]) -> Callable[[], Awaitable[Any]]:
            async def job() -> None:
                request = watchlist_pb2.EnrolRequest(
                    watchlist_id="bench", images=batch, governance=governance()
                )
                await stub.Enrol(request, timeout=120)

            return job

        def analyze_job(batch: list[bytes]) -> Callable[[], Awaitable[Any]]:
            async def job() -> None:
                await asyncio.gather(*(analyzer.analyze(image) for image in batch))

            return job

        for per_request in (1, 5):
            batches = [images[i : i + per_request] for i in range(0, len(images), per_request)]
            for in_flight in (1, IN_FLIGHT):
                base_s, _ = await run_concurrently([analyze_job(b) for b in batches], in_flight)
                svc_s, lat = await run_concurrently([enrol_job(b) for b in batches], in_flight)
                base_rate, svc_rate = len(images) / base_s, len(images) / svc_s
                rows.append(
                    f"| {per_request} | {in_flight} | {svc_rate:.2f} | "
                    f"{statistics.median(lat):.0f} | {base_rate:.2f} | {svc_rate / base_rate:.2f} |"
                )
    await server.stop(0)
    return rows


async def memory(redis_url: str, client: Any, sizes: Sequence[int]) -> list[str]:
    store = RedisStore.from_url(redis_url)
    event = AuditEvent("bench", "bench", {})
    rows = []
    rng = np.random.default_rng(7)
    for algorithm in ("FLAT", "HNSW"):
        for size in sizes:
            client.flushall()
            wl = f"mem-{algorithm.lower()}-{size}"
            await store.create_watchlist(
                WatchlistRecord(wl, wl, "", algorithm, False, now(), "bench"), event
            )
            client.delete(OUTBOX_KEY)
            base_mem = int(client.info("memory")["used_memory"])
            base_keys = int(client.dbsize())
            expires = now() + timedelta(days=1)
            vectors = rng.standard_normal((size, 128)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            start = time.perf_counter()
            for i in range(size):
                entry = EntryRecord(
                    entry_id=f"e{i:07d}",
                    watchlist_id=wl,
                    governance=Governance(
                        category=common_pb2.CATEGORY_WANTED_BY_COURTS,
                        legal_basis_ref="warrant 123/2030",
                        image_source="custody photo",
                        approver="Insp. Morse",
                        expires_at=expires,
                        subject_ref=f"PNC-{i:08d}",
                    ),
                    image_count=1,
                    enrolled_at=now(),
                    model_version="dlib-resnet-v1-5pt150",
                )
                await store.add_entry(entry, [vectors[i]], [], event)
            write_s = time.perf_counter() - start
            client.delete(OUTBOX_KEY)  # audit events are not the entry's cost
            used = int(client.info("memory")["used_memory"]) - base_mem
            info = client.ft(index_name(wl)).info()
            index_bytes = float(info["vector_index_sz_mb"]) * 1024 * 1024
            keys_per_entry = (int(client.dbsize()) - base_keys) / size
            rows.append(
                f"| {algorithm} | {size} | {used / size:.0f} | {index_bytes / size:.0f} | "
                f"{keys_per_entry:.0f} | {size / write_s:.0f} | 512 | {used / size / 512:.1f} |"
            )
    await store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--photos", choices=["auto", "samples", "lfw"], default="auto")
    parser.add_argument("--images", type=int, default=20, help="images per enrolment run")
    args = parser.parse_args()

    use_lfw = args.photos == "lfw" or (args.photos == "auto" and LFW.is_dir())
    images = lfw_photos(args.images * 2) if use_lfw else sample_views()
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cpu_model()}, {cores} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = RedisInstance(Path(tmp) / "redis").start()
        triton = TritonInstance(Path(tmp) / "triton").start()
        try:
            source = "lfw-dev people" if use_lfw else "sample-photo views"
            print(f"\n### Enrolment ({args.images} images: {source}; AOF appendfsync always)\n")
            print(
                "| images/request | in flight | Enrol images/s | Enrol p50 ms/request "
                "| Triton alone images/s | service / Triton |"
            )
            print("|---|---|---|---|---|---|")
            for row in asyncio.run(enrolment(triton.url, redis_server.url, images, args.images)):
                print(row)
            triton.terminate()  # part 2 needs no Triton: give its CPU back
            print("\n### Memory per entry (one vector each; AOF appendfsync always)\n")
            print(
                "| index | entries | Redis bytes/entry | vector index bytes/entry | keys/entry "
                "| writes/s | raw vector bytes | Redis / raw |"
            )
            print("|---|---|---|---|---|---|---|---|")
            with redis_server.client() as client:
                for row in asyncio.run(memory(redis_server.url, client, args.sizes)):
                    print(row)
        finally:
            triton.terminate()
            redis_server.terminate()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
