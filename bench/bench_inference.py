"""Benchmark: face detection and embedding served by Triton vs the same work in-process with dlib.

    .venv/bin/python bench/bench_inference.py            # starts its own Triton (models/)
    .venv/bin/python bench/bench_inference.py --url 127.0.0.1:8001   # use a running one

Prints Markdown tables (medians) for docs/PERFORMANCE.md:

* detect latency per frame at 480p / 720p / 1080p — ``face_detect`` (HOG + landmarks + chips)
  and ``face_analyze`` (one round trip: detect + embed), raw RGB frames in, against dlib doing
  exactly the same in this process;
* embed throughput (faces/s) at batch 1 / 8 / 32 with one client, and with 1 / 4 / 16
  concurrent clients sending one chip each (where Triton's dynamic batcher and its two model
  instances come in), against dlib in-process (one thread, and a thread per client).

Takes about two minutes on 2 cores. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import DLIB, InProcess, UInt8, cpu_seconds, machine, rgb

from lfr.inference import TritonFaceAnalyzer
from lfr_cli.sample_photos import GRACE_HOPPER

RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def make_frame(size: tuple[int, int]) -> UInt8:
    """Grace Hopper's portrait at 60 % of the frame height on a grey background: one face."""
    width, height = size
    portrait = rgb(GRACE_HOPPER.read_bytes())
    ph = int(height * 0.6)
    pw = int(portrait.shape[1] * ph / portrait.shape[0])
    photo = cv2.resize(portrait, (pw, ph), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 120, np.uint8)
    y, x = (height - ph) // 2, (width - pw) // 2
    frame[y : y + ph, x : x + pw] = photo
    return frame


def group_cpu_s(pgid: int | None) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group: the
    Triton server and all its Python-backend stubs."""
    if pgid is None:
        return float("nan")
    from lfr_cli.process import group_pids

    return cpu_seconds(group_pids(pgid))


class Cpu:
    """CPU per call: this process for in-process work, Triton's process group for served."""

    pgid: int | None = None


async def paired(
    local: Callable[[], Any], served: Callable[[], Awaitable[Any]], repeat: int
) -> tuple[float, float, float, float]:
    """Median wall seconds of ``local()`` and ``await served()``, run alternately so that both
    see the same background load (one warm-up each), and mean CPU seconds per call of each."""
    local()
    await served()
    walls: tuple[list[float], list[float]] = ([], [])
    cpu_local = cpu_served = 0.0
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        local()
        walls[0].append(time.perf_counter() - start)
        cpu_local += time.process_time() - cpu
        start, cpu = time.perf_counter(), group_cpu_s(Cpu.pgid)
        await served()
        walls[1].append(time.perf_counter() - start)
        cpu_served += group_cpu_s(Cpu.pgid) - cpu
    return (
        statistics.median(walls[0]),
        statistics.median(walls[1]),
        cpu_local / repeat,
        cpu_served / repeat,
    )


async def bench(url: str, repeat: int, only: str | None = None) -> None:
    local = InProcess()
    client = TritonFaceAnalyzer(url, timeout_s=120.0)
    try:
        assert await client.ready(), f"Triton at {url} is not ready"
        print(f"Machine: {machine(DLIB)}\n")

        if only != "embed":
            await bench_detect(client, local, repeat)
        if only != "detect":
            await bench_embed(client, local, repeat)
    finally:
        await client.close()


async def bench_detect(client: TritonFaceAnalyzer, local: InProcess, repeat: int) -> None:
    print("### Detect latency per frame (one face, RGB frame in; medians, ms)\n")
    print(
        "| frame | dlib in-process detect | Triton `face_detect` | ratio "
        "| dlib in-process detect+embed | Triton `face_analyze` | ratio "
        "| CPU ms/frame: dlib detect+embed | Triton `face_analyze` (all processes) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, size in RESOLUTIONS.items():
        frame = make_frame(size)
        n = max(3, repeat // (2 if label == "1080p" else 1))
        d_local, d_triton, _, _ = await paired(
            lambda f=frame: local.detect(f),  # type: ignore[misc]
            lambda f=frame: client.detect(f),  # type: ignore[misc]
            n,
        )
        a_local, a_triton, c_local, c_triton = await paired(
            lambda f=frame: local.analyze(f),  # type: ignore[misc]
            lambda f=frame: client.analyze(f),  # type: ignore[misc]
            n,
        )
        print(
            f"| {label} {size[0]}x{size[1]} | {d_local * 1e3:.0f} | {d_triton * 1e3:.0f} "
            f"| {d_triton / d_local:.2f} | {a_local * 1e3:.0f} | {a_triton * 1e3:.0f} "
            f"| {a_triton / a_local:.2f} | {c_local * 1e3:.0f} | {c_triton * 1e3:.0f} |"
        )


async def bench_embed(client: TritonFaceAnalyzer, local: InProcess, repeat: int) -> None:
    chip = local.detect(make_frame(RESOLUTIONS["480p"]))[0]
    rng = np.random.default_rng(0)
    pool = np.stack(
        [
            np.clip(chip.astype(np.int16) + rng.integers(-8, 9, chip.shape), 0, 255)
            for _ in range(32)
        ]
    ).astype(np.uint8)

    print("\n### Embed throughput, one client (faces/s, medians)\n")
    print("| batch | dlib in-process | Triton `face_embed` | ratio |")
    print("|---:|---:|---:|---:|")
    for batch in (1, 8, 32):
        chips = pool[:batch]
        n = {1: repeat, 8: 3, 32: 2}[batch]
        t_local, t_triton, _, _ = await paired(
            lambda c=chips: local.embed(list(c)),  # type: ignore[misc]
            lambda c=chips: client.embed_chips(c),  # type: ignore[misc]
            n,
        )
        print(
            f"| {batch} | {batch / t_local:.1f} | {batch / t_triton:.1f} "
            f"| {t_local / t_triton:.2f} |"
        )

    rounds = 2
    print(
        f"\n### Embed throughput, concurrent clients, one chip per request "
        f"(faces/s, best of {rounds})\n"
    )
    print(
        "| clients | dlib in-process, 1 thread | dlib in-process, thread per client "
        "| Triton `face_embed` | Triton / 1 thread |"
    )
    print("|---:|---:|---:|---:|---:|")
    total = 32
    for clients in (1, 4, 16):
        per_client = max(1, total // clients)
        faces = per_client * clients
        singles = [pool[i % 32 : i % 32 + 1] for i in range(faces)]

        def sequential(chips: list[UInt8] = singles) -> None:
            for one in chips:
                local.embed(list(one))

        def threaded(chips: list[UInt8] = singles, n: int = clients) -> None:
            with concurrent.futures.ThreadPoolExecutor(n) as executor:
                list(executor.map(lambda one: local.embed(list(one)), chips))

        async def served(
            chips: list[UInt8] = singles, n: int = clients, k: int = per_client
        ) -> None:
            async def worker(mine: list[UInt8]) -> None:
                for one in mine:
                    await client.embed_chips(one)

            await asyncio.gather(*(worker(chips[i * k : (i + 1) * k]) for i in range(n)))

        await client.embed_chips(pool[:1])
        best = [0.0, 0.0, 0.0]  # faces/s, best of `rounds` interleaved rounds
        for _ in range(rounds):
            for idx, run in enumerate((sequential, threaded)):
                start = time.perf_counter()
                run()
                best[idx] = max(best[idx], faces / (time.perf_counter() - start))
            start = time.perf_counter()
            await served()
            best[2] = max(best[2], faces / (time.perf_counter() - start))
        seq, thr, srv = best
        print(f"| {clients} | {seq:.1f} | {thr:.1f} | {srv:.1f} | {srv / seq:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="gRPC host:port of a running Triton (default: start one)")
    parser.add_argument("--repeat", type=int, default=6, help="timed runs per cell (default 6)")
    parser.add_argument("--only", choices=["detect", "embed"], help="run one part only")
    args = parser.parse_args()
    if args.url:
        asyncio.run(bench(args.url, args.repeat, args.only))
        return 0
    from lfr_cli.testing import TritonInstance

    with tempfile.TemporaryDirectory(prefix="lfr-bench-") as tmp:
        started = time.perf_counter()
        server = TritonInstance(Path(tmp)).start()
        Cpu.pgid = server.pid  # started in its own session: its pgid
        try:
            print(f"(Triton started in {time.perf_counter() - started:.1f} s)", file=sys.stderr)
            asyncio.run(bench(server.url, args.repeat, args.only))
        finally:
            server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
