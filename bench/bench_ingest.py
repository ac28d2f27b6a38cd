"""Benchmark: frames through the ingest service (gRPC StreamFrames -> pipeline -> Triton
``face_analyze`` -> quality gate, tracker, probes) against the same frames through dlib
in-process, at 480p / 720p / 1080p with 1 and 4 cameras.

    .venv/bin/python bench/bench_ingest.py                      # starts its own Triton
    .venv/bin/python bench/bench_ingest.py --url 127.0.0.1:8001 # use a running one
    .venv/bin/python bench/bench_ingest.py --frames 4           # shorter

Each camera is one StreamFrames stream pushing JPEG frames (two faces each: Grace Hopper and
the astronaut, pasted on a backdrop and moving) in lockstep — the next frame once the previous
result is back — so nothing is dropped and the figures are what the pipeline sustains. Match is
an in-process stub that answers NO_MATCH at once (the match service has its own benchmark).

The baseline decodes the same JPEGs and runs what ``face_analyze`` runs (HOG with the same
upsampling, 5-point landmarks, chips, ResNet embeddings) with dlib in this process: one thread,
or a thread per camera.

Reported: frames/s (wall), frames/s per core (over the machine's cores), CPU seconds per frame
(ingest + Triton and its backend processes, from /proc; of which ingest's own, with its test
client, in the last column), per-frame latency p50/p95 (receipt to decision, as
FrameResult.latency_ms reports it; for dlib, decode to embeddings). A warm-up frame per camera
is not timed. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from common import DLIB, InProcess, cpu_seconds, machine, percentile, process_tree, rgb
from grpc import aio

from lfr.common.logging import configure_logging
from lfr.inference import TritonFaceAnalyzer
from lfr.v1 import ingest_pb2, ingest_pb2_grpc, match_pb2
from lfr_cli.sample_photos import ASTRONAUT, GRACE_HOPPER
from lfr_ingest.adapters.video import OpenCvOpener
from lfr_ingest.ports import ActiveDeployment
from lfr_ingest.server import IngestDeps, build_server
from lfr_ingest.settings import IngestSettings

RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


# --- frames ------------------------------------------------------------------------------------


def scene_frames(size: tuple[int, int], n: int, seed: int) -> list[bytes]:
    """``n`` JPEG frames: Hopper walks right, the astronaut walks left; faces ~18 % of height."""
    w, h = size
    k = h / 480
    hop = cv2.resize(rgb(GRACE_HOPPER.read_bytes()), None, fx=0.45 * k, fy=0.45 * k)
    astro = cv2.resize(rgb(ASTRONAUT.read_bytes())[0:250, 80:360], None, fx=0.9 * k, fy=0.9 * k)
    y, x = np.mgrid[0:h, 0:w]
    base = 60 + 40 * np.sin((x + seed * 13) / (37.0 * k)) + 30 * np.cos(y / (23.0 * k))
    backdrop = np.dstack([base, base * 0.9, base * 0.8]).astype(np.uint8)
    frames = []
    for i in range(n):
        img = backdrop.copy()
        for pic, px, py in (
            (hop, int((20 + 30 * i) * k), int(20 * k)),
            (astro, int(w - astro.shape[1] - (20 + 25 * i) * k), int(h - astro.shape[0] - 5 * k)),
        ):
            ph, pw = pic.shape[:2]
            x0, y0, x1, y1 = max(px, 0), max(py, 0), min(px + pw, w), min(py + ph, h)
            img[y0:y1, x0:x1] = pic[y0 - py : y1 - py, x0 - px : x1 - px]
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        assert ok
        frames.append(bytes(buf))
    return frames


# --- ingest under test -------------------------------------------------------------------------


class NoMatch:
    async def match(self, request: match_pb2.MatchRequest) -> match_pb2.MatchResponse:
        return match_pb2.MatchResponse(
            request_id=request.request_id, outcome=match_pb2.MATCH_OUTCOME_NO_MATCH
        )

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class Everywhere:
    async def resolve(self, camera_id: str) -> ActiveDeployment | None:
        return ActiveDeployment("bench")


@dataclass
class Result:
    fps: float
    cpu_per_frame: float
    p50_ms: float
    p95_ms: float
    #: Of ``cpu_per_frame``, what this process spent (ingest and its test client).
    own_cpu_per_frame: float = 0.0


def tree_cpu_s(roots: list[int]) -> float:
    """CPU seconds of these processes and all their descendants. Each process counts once: a
    Triton started here is this process's child as well as a root of its own."""
    return cpu_seconds(pid for root in roots for pid in process_tree(root))


async def through_ingest(
    stub: ingest_pb2_grpc.IngestServiceAsyncStub,
    cameras: list[list[bytes]],
    tag: str,
    roots: list[int],
) -> Result:
    latencies: list[float] = []

    async def camera(idx: int, frames: list[bytes], timed: bool) -> None:
        answered: asyncio.Queue[None] = asyncio.Queue()
        t0 = time.time()

        async def requests() -> AsyncIterator[ingest_pb2.Frame]:
            for i, data in enumerate(frames):
                f = ingest_pb2.Frame(camera_id=f"{tag}-{idx}", sequence=i, encoded=data)
                f.capture_time.FromNanoseconds(int((t0 + i * 0.2) * 1e9))
                yield f
                await answered.get()

        async for result in stub.StreamFrames(requests(), timeout=3600):
            assert result.status == ingest_pb2.FRAME_STATUS_PROCESSED, result
            if timed:
                latencies.append(result.latency_ms)
            answered.put_nowait(None)

    # Warm-up: one frame per camera (connections, Triton instances).
    await asyncio.gather(*(camera(i, f[:1], False) for i, f in enumerate(cameras)))
    cpu0, own0, start = tree_cpu_s(roots), time.process_time(), time.perf_counter()
    await asyncio.gather(*(camera(i, f[1:], True) for i, f in enumerate(cameras)))
    wall, cpu = time.perf_counter() - start, tree_cpu_s(roots) - cpu0
    own = time.process_time() - own0
    n = sum(len(f) - 1 for f in cameras)
    return Result(n / wall, cpu / n, percentile(latencies, 50), percentile(latencies, 95), own / n)


# --- baseline ----------------------------------------------------------------------------------


def in_process(local: InProcess, cameras: list[list[bytes]]) -> Result:
    latencies: list[float] = []

    def camera(frames: list[bytes]) -> None:
        for data in frames:
            t = time.perf_counter()
            local.analyze(rgb(data))
            latencies.append((time.perf_counter() - t) * 1000)

    local.analyze(rgb(cameras[0][0]))  # warm-up
    cpu0, start = time.process_time(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(cameras)) as pool:
        list(pool.map(camera, [f[1:] for f in cameras]))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    n = sum(len(f) - 1 for f in cameras)
    return Result(n / wall, cpu / n, percentile(latencies, 50), percentile(latencies, 95))


# --- the run -----------------------------------------------------------------------------------


async def bench(url: str, triton_pid: int | None, frames: int, camera_counts: list[int]) -> None:
    configure_logging("bench-ingest", level="warning")
    cores = os.cpu_count() or 1
    analyzer = TritonFaceAnalyzer(url, timeout_s=600.0)
    assert await analyzer.ready(), f"Triton at {url} is not ready"
    settings = IngestSettings(
        port=0,
        target_fps=0,
        deployment_cache_s=60,
        health_interval_s=60,
        audit_interval_s=0,
        analyze_timeout_s=600,
    )
    deps = IngestDeps(
        analyzer=analyzer, matcher=NoMatch(), resolver=Everywhere(), opener=OpenCvOpener()
    )
    server = await build_server(settings, deps)
    await server.start()
    roots = [os.getpid(), *([triton_pid] if triton_pid else [])]
    local = InProcess()
    print(f"Machine: {machine(DLIB)}")
    print(f"Frames per camera: {frames} timed (+1 warm-up), two faces each, JPEG q90\n")
    print(
        "| frame | cameras | ingest+Triton frames/s | per core | CPU s/frame | p50 ms | p95 ms "
        "| dlib in-process frames/s | per core | CPU s/frame | p50 ms | p95 ms | ingest / dlib "
        "| ingest's own CPU ms/frame |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    try:
        async with aio.insecure_channel(server.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            for name, size in RESOLUTIONS.items():
                for count in camera_counts:
                    cams = [scene_frames(size, frames + 1, seed=c) for c in range(count)]
                    served = await through_ingest(stub, cams, f"{name}-{count}", roots)
                    base = await asyncio.to_thread(in_process, local, cams)
                    cells = [f"{name} {size[0]}x{size[1]}", str(count)]
                    for r in (served, base):
                        cells += [f"{r.fps:.2f}", f"{r.fps / cores:.2f}", f"{r.cpu_per_frame:.2f}"]
                        cells += [f"{r.p50_ms:.0f}", f"{r.p95_ms:.0f}"]
                    cells.append(f"{served.fps / base.fps:.2f}")
                    cells.append(f"{served.own_cpu_per_frame * 1000:.0f}")
                    print("| " + " | ".join(cells) + " |", flush=True)
    finally:
        await server.stop(0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="gRPC host:port of a running Triton (default: start one)")
    parser.add_argument("--frames", type=int, default=6, help="timed frames per camera")
    parser.add_argument("--cameras", default="1,4", help="camera counts, comma-separated")
    args = parser.parse_args()
    counts = [int(c) for c in args.cameras.split(",")]
    if args.url:
        asyncio.run(bench(args.url, None, args.frames, counts))
        return 0
    from lfr_cli.testing import TritonInstance

    with tempfile.TemporaryDirectory(prefix="lfr-bench-ingest-") as tmp:
        started = time.perf_counter()
        server = TritonInstance(Path(tmp)).start()
        print(f"(Triton started in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
        try:
            asyncio.run(bench(server.url, server.pid, args.frames, counts))
        finally:
            server.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
