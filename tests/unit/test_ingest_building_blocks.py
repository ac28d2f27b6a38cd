"""Ingest building blocks with no I/O: the newest-wins queue, the sampler, frame header checks,
the quality gate and the settings' fail-fast validation."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from lfr.common.errors import ConfigError, InvalidArgument
from lfr.common.settings import load_settings
from lfr.inference.types import FaceQuality
from lfr.v1 import ingest_pb2
from lfr_ingest.frames import FrameLimits, check_camera_id, encoded_dimensions, frame_image
from lfr_ingest.latest_queue import LatestWinsQueue
from lfr_ingest.quality import QualityGate, shot_score
from lfr_ingest.sampler import Sampler
from lfr_ingest.settings import IngestSettings

# --- queue --------------------------------------------------------------------------------------


async def test_full_queue_drops_the_oldest_and_hands_it_back() -> None:
    q: LatestWinsQueue[int] = LatestWinsQueue(2)
    assert q.put_latest(1) is None
    assert q.put_latest(2) is None
    assert q.put_latest(3) == 1
    assert q.put_latest(4) == 2
    assert [await q.get(), await q.get()] == [3, 4]
    assert len(q) == 0


async def test_put_wait_waits_for_room_instead_of_dropping() -> None:
    q: LatestWinsQueue[int] = LatestWinsQueue(1)
    await q.put_wait(1)
    blocked = asyncio.create_task(q.put_wait(2))
    await asyncio.sleep(0.01)
    assert not blocked.done() and len(q) == 1
    assert await q.get() == 1
    await asyncio.wait_for(blocked, 1)
    assert await q.get() == 2


async def test_get_waits_and_survives_cancellation() -> None:
    q: LatestWinsQueue[str] = LatestWinsQueue(3)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.02)
    q.put_latest("a")
    assert await asyncio.wait_for(q.get(), 1) == "a"  # nothing was lost by the cancelled get
    q.put_latest("b")
    assert q.drain() == ["b"] and len(q) == 0


# --- sampler -----------------------------------------------------------------------------------


def test_sampler_keeps_every_fifth_frame_of_25fps_at_5fps() -> None:
    s = Sampler(5.0)
    kept = [i for i in range(50) if s.accept(1000.0 + i * 0.04)]
    assert kept == list(range(0, 50, 5))


def test_sampler_tolerates_jitter_and_restarts_after_a_gap() -> None:
    s = Sampler(10.0)
    assert s.accept(0.0)
    assert s.accept(0.098)  # 2 ms early: still the next slot
    assert not s.accept(0.15)
    assert s.accept(0.2)
    assert s.accept(5.0)  # after a gap
    assert not s.accept(5.05)
    assert s.accept(5.1)


def test_sampler_zero_keeps_everything() -> None:
    s = Sampler(0)
    assert all(s.accept(t * 0.001) for t in range(100))


# --- frames ------------------------------------------------------------------------------------

LIMITS = FrameLimits(max_bytes=1_000_000, max_pixels=1920 * 1080)


def _encode(ext: str, w: int, h: int, params: list[int] | None = None) -> bytes:
    img = np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return bytes(buf)


@pytest.mark.parametrize(
    ("ext", "params"),
    [(".png", None), (".jpg", None), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])],
)
def test_dimensions_come_from_the_header(ext: str, params: list[int] | None) -> None:
    assert encoded_dimensions(_encode(ext, 321, 123, params)) == (321, 123)


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a....",
        b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(256)) * 4,  # JPEG magic, then garbage
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"\xff\xd8",
    ],
)
def test_corrupt_or_foreign_images_are_bad_image(data: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        encoded_dimensions(data)
    assert info.value.reason == "BAD_IMAGE"


def test_truncated_jpeg_body_passes_the_header_check() -> None:
    # Only the header is read here; a cut-off body is Triton's to reject (BAD_IMAGE there).
    data = _encode(".jpg", 64, 48)
    assert encoded_dimensions(data[: len(data) // 2]) == (64, 48)


def test_frame_image_limits_and_reasons() -> None:
    def reason(frame: ingest_pb2.Frame, limits: FrameLimits = LIMITS) -> str:
        with pytest.raises(InvalidArgument) as info:
            frame_image(frame, limits)
        return info.value.reason

    assert reason(ingest_pb2.Frame(camera_id="c")) == "EMPTY_IMAGE"
    assert reason(ingest_pb2.Frame(camera_id="c", encoded=b"")) == "EMPTY_IMAGE"
    big = _encode(".png", 64, 64)
    assert reason(ingest_pb2.Frame(encoded=big), FrameLimits(100, 10**9)) == "IMAGE_TOO_LARGE"
    assert reason(ingest_pb2.Frame(encoded=big), FrameLimits(10**9, 64 * 63)) == "IMAGE_TOO_LARGE"
    raw = ingest_pb2.RawImage(width=4, height=2, rgb=bytes(4 * 2 * 3 - 1))
    assert reason(ingest_pb2.Frame(raw=raw)) == "BAD_IMAGE"
    raw = ingest_pb2.RawImage(width=0, height=2, rgb=bytes(6))
    assert reason(ingest_pb2.Frame(raw=raw)) == "BAD_IMAGE"
    raw = ingest_pb2.RawImage(width=4000, height=4000, rgb=bytes(3))
    assert reason(ingest_pb2.Frame(raw=raw)) == "IMAGE_TOO_LARGE"


def test_frame_image_returns_the_payload() -> None:
    png = _encode(".png", 8, 6)
    assert frame_image(ingest_pb2.Frame(encoded=png), LIMITS) == png
    rgb = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 3)
    frame = ingest_pb2.Frame(raw=ingest_pb2.RawImage(width=4, height=2, rgb=rgb.tobytes()))
    out = frame_image(frame, LIMITS)
    assert isinstance(out, np.ndarray) and out.shape == (2, 4, 3)
    assert np.array_equal(out, rgb)


@pytest.mark.parametrize("camera_id", ["", "-x", "a b", "x" * 129, "cam\n1"])
def test_bad_camera_ids(camera_id: str) -> None:
    with pytest.raises(InvalidArgument):
        check_camera_id(camera_id)


def test_good_camera_ids() -> None:
    for camera_id in ("cam-1", "site/gate:3", "A.b_c@d", "x" * 128):
        check_camera_id(camera_id)


# --- quality gate ------------------------------------------------------------------------------


def test_quality_gate_checks_each_signal() -> None:
    gate = QualityGate(min_face_px=40, min_blur=20, max_yaw_degrees=30, min_detector_score=0.5)
    good = FaceQuality(size_px=80, blur=100, yaw=-10, detector_score=1.0)
    assert gate.passes(good)
    assert not gate.passes(FaceQuality(30, 100, 0, 1.0))  # too small
    assert not gate.passes(FaceQuality(80, 10, 0, 1.0))  # blurred
    assert not gate.passes(FaceQuality(80, 100, -45, 1.0))  # turned away
    assert not gate.passes(FaceQuality(80, 100, 0, 0.2))  # unsure detection


def test_shot_score_prefers_bigger_sharper_frontal_faces() -> None:
    base = FaceQuality(size_px=60, blur=80, yaw=20, detector_score=0.5)
    assert shot_score(FaceQuality(120, 80, 20, 0.5)) > shot_score(base)
    assert shot_score(FaceQuality(60, 200, 20, 0.5)) > shot_score(base)
    assert shot_score(FaceQuality(60, 80, 0, 0.5)) > shot_score(base)
    assert shot_score(FaceQuality(60, 80, 20, 1.5)) > shot_score(base)


# --- settings ----------------------------------------------------------------------------------


def test_settings_fail_fast_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFR_INGEST_QUEUE_SIZE", "0")
    with pytest.raises(ConfigError, match="LFR_INGEST_QUEUE_SIZE"):
        load_settings(IngestSettings)


def test_settings_refuse_a_frame_limit_above_the_message_limit() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        IngestSettings(max_frame_bytes=40 * 2**20, max_receive_message_bytes=32 * 2**20)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFR_INGEST_TARGET_FPS", "12.5")
    monkeypatch.setenv("LFR_INGEST_FILE_SOURCE_ROOTS", '["/srv/video"]')
    settings = load_settings(IngestSettings)
    assert settings.target_fps == 12.5
    assert settings.file_source_roots == ("/srv/video",)
