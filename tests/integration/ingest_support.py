"""Helpers for ingest's integration tests: scenes composed from registry-shipped photos (Grace
Hopper and the astronaut pasted onto a background and moved across frames), the suite of real
services, deployments through the real watchlist service, and a real RTSP server."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import numpy.typing as npt

from lfr.common import timeutil
from lfr.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc, watchlist_pb2, watchlist_pb2_grpc
from lfr_cli.process import free_port
from lfr_cli.sample_photos import ASTRONAUT, GRACE_HOPPER
from lfr_cli.testing import RedisInstance, ServiceInstance, TritonInstance
from tests.conftest import ServiceStarter

Rgb = npt.NDArray[np.uint8]
FRAME_SIZE = (640, 480)


def _decode(data: bytes) -> Rgb:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.uint8)


def hopper_small() -> Rgb:
    """Grace Hopper at 45 %: a ~85 px face."""
    img = cv2.resize(
        _decode(GRACE_HOPPER.read_bytes()), None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA
    )
    return np.asarray(img, np.uint8)


def astronaut_head() -> Rgb:
    """The astronaut's head and shoulders (the badge on her suit, which HOG half-detects, is cut
    off), at 90 %: a ~80 px face."""
    head = _decode(ASTRONAUT.read_bytes())[0:250, 80:360]
    img = cv2.resize(head, None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    return np.asarray(img, np.uint8)


def background(size: tuple[int, int] = FRAME_SIZE) -> Rgb:
    """A fixed, faceless, textured backdrop."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = 60 + 40 * np.sin(x / 37.0) + 30 * np.cos(y / 23.0)
    return np.dstack([base, base * 0.9, base * 0.8]).astype(np.uint8)


def compose(placements: list[tuple[Rgb, int, int]], size: tuple[int, int] = FRAME_SIZE) -> Rgb:
    """The backdrop with each image pasted at (x, y), clipped to the frame."""
    frame = background(size).copy()
    w, h = size
    for image, x, y in placements:
        ih, iw = image.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + iw, w), min(y + ih, h)
        if x1 > x0 and y1 > y0:
            frame[y0:y1, x0:x1] = image[y0 - y : y1 - y, x0 - x : x1 - x]
    return frame


def jpeg(rgb: Rgb, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return bytes(buf)


def frame(camera_id: str, sequence: int, image: bytes, capture_s: float) -> ingest_pb2.Frame:
    f = ingest_pb2.Frame(camera_id=camera_id, sequence=sequence, encoded=image)
    f.capture_time.CopyFrom(timeutil.to_timestamp(capture_s))
    return f


# --- the suite ---------------------------------------------------------------------------------


@dataclass
class Suite:
    redis: RedisInstance
    triton: TritonInstance
    alert: ServiceInstance
    watchlist: ServiceInstance
    match: ServiceInstance
    ingest: ServiceInstance
    #: The ingest process's TMPDIR (a folder of its own).
    ingest_tmp: Path
    starter: ServiceStarter

    def ingest_stub(self, channel: grpc.Channel) -> ingest_pb2_grpc.IngestServiceStub:
        return ingest_pb2_grpc.IngestServiceStub(channel)


INGEST_ENV = {
    "TARGET_FPS": "0",  # the tests pace their own frames
    "RECONNECT_INITIAL_S": "0.2",
    "RECONNECT_MAX_S": "1",
    "MAX_FRAME_BYTES": str(4 * 1024 * 1024),
    "HEALTH_INTERVAL_S": "0.5",
    "AUDIT_INTERVAL_S": "2",
}


def start_suite(
    starter: ServiceStarter, redis: RedisInstance, triton: TritonInstance, tmp: Path
) -> Suite:
    alert = starter("alert", {"REDIS_URL": redis.url})
    watchlist = starter(
        "watchlist", {"REDIS_URL": redis.url, "TRITON_URL": triton.url, "ALERT_ADDR": alert.addr}
    )
    match = starter(
        "match",
        {"REDIS_URL": redis.url, "WATCHLIST_ADDR": watchlist.addr, "ALERT_ADDR": alert.addr},
    )
    ingest_tmp = tmp / "ingest-tmp"
    ingest_tmp.mkdir()
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(ingest_tmp)  # the ingest process inherits it
    try:
        ingest = starter(
            "ingest",
            {
                "TRITON_URL": triton.url,
                "MATCH_ADDR": match.addr,
                "WATCHLIST_ADDR": watchlist.addr,
                "ALERT_ADDR": alert.addr,
                **INGEST_ENV,
            },
        )
    finally:
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
    return Suite(redis, triton, alert, watchlist, match, ingest, ingest_tmp, starter)


def deploy(
    watchlist_addr: str, camera_ids: list[str], enrol: dict[str, bytes], *, actor: str = "t"
) -> tuple[str, dict[str, str]]:
    """A watch list with ``enrol`` (subject ref -> photo) and an active deployment covering
    ``camera_ids``; returns (deployment id, subject ref -> entry id)."""
    now = timeutil.now()
    with grpc.insecure_channel(watchlist_addr) as channel:
        stub = watchlist_pb2_grpc.WatchlistServiceStub(channel)
        wl = stub.CreateWatchlist(
            watchlist_pb2.CreateWatchlistRequest(name=f"ingest test {camera_ids}"), timeout=10
        )
        entries = {}
        for ref, photo in enrol.items():
            governance = watchlist_pb2.Governance(
                category=common_pb2.CATEGORY_MISSING_AT_RISK,
                legal_basis_ref="TEST-INGEST",
                image_source="registry sample photo",
                image_date=timeutil.to_timestamp(now),
                approver=actor,
                expires_at=timeutil.to_timestamp(now + timedelta(days=1)),
                subject_ref=ref,
            )
            entry = stub.Enrol(
                watchlist_pb2.EnrolRequest(
                    watchlist_id=wl.watchlist_id, images=[photo], governance=governance
                ),
                timeout=60,
            )
            entries[ref] = entry.entry_id
        created = stub.CreateDeployment(
            watchlist_pb2.CreateDeploymentRequest(
                authorising_officer=actor,
                purpose="ingest integration test",
                location="loopback",
                camera_ids=camera_ids,
                watchlist_id=wl.watchlist_id,
                start_time=timeutil.to_timestamp(now - timedelta(seconds=1)),
                end_time=timeutil.to_timestamp(now + timedelta(hours=1)),
            ),
            timeout=10,
        )
        stub.StartDeployment(
            watchlist_pb2.StartDeploymentRequest(
                deployment_id=created.deployment_id, requested_by=actor
            ),
            timeout=10,
        )
    return created.deployment_id, entries


def stop_deployment(watchlist_addr: str, deployment_id: str) -> None:
    with grpc.insecure_channel(watchlist_addr) as channel:
        watchlist_pb2_grpc.WatchlistServiceStub(channel).StopDeployment(
            watchlist_pb2.StopDeploymentRequest(
                deployment_id=deployment_id, requested_by="t", reason="test over"
            ),
            timeout=10,
        )


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def files_under(*roots: Path) -> dict[str, int]:
    """Every file under the roots, with its size."""
    found: dict[str, int] = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                found[str(path)] = path.stat().st_size
    return found


def wait_for(check: Any, timeout_s: float, what: str, step_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step_s)


# --- RTSP --------------------------------------------------------------------------------------

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_APT_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good"
)
_RTSP_SERVER = Path(__file__).with_name("ingest_rtsp_server.py")


def rtsp_unavailable() -> str | None:
    """Why a GStreamer RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} is missing"
    probe = (
        "import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing=[e for e in ('multifilesrc','jpegdec','videoconvert','jpegenc','rtpjpegpay')"
        " if Gst.ElementFactory.find(e) is None]; assert not missing, missing"
    )
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"no GStreamer RTSP server ({last}); apt-get install {RTSP_APT_PACKAGES}"
    return None


class RtspServer:
    """``rtsp://127.0.0.1:PORT/cam`` serving one JPEG at ``fps``; stop and start at will."""

    def __init__(self, image: Path, fps: int = 5, port: int | None = None) -> None:
        self.image = image
        self.fps = fps
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> RtspServer:
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(_RTSP_SERVER), str(self.port), str(self.image), str(self.fps)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if "READY" not in line:
            self.stop()
            raise AssertionError(f"RTSP server did not start: {line!r}")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def ingest_channel(suite: Suite) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        suite.ingest.addr, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        yield channel


def lockstep(
    stub: ingest_pb2_grpc.IngestServiceStub, frames: list[ingest_pb2.Frame], timeout_s: float
) -> list[ingest_pb2.FrameResult]:
    """Push each frame only once the previous one's result is back (a camera that never
    outpaces the pipeline), on one stream."""
    answered = threading.Semaphore(0)

    def requests() -> Iterator[ingest_pb2.Frame]:
        for f in frames:
            yield f
            if not answered.acquire(timeout=timeout_s):
                return

    results = []
    for result in stub.StreamFrames(requests(), timeout=timeout_s):
        results.append(result)
        answered.release()
    return results
