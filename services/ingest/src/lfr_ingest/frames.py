"""Checks on one incoming frame that need no decoding: camera id, size limits, and the image
header (format and dimensions). Everything here raises ``InvalidArgument`` with a reason that
ends up in ``FrameResult.error``; messages name the problem, never the pixels."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from lfr.common.errors import InvalidArgument
from lfr.v1 import ingest_pb2
from lfr_ingest.ports import RgbFrame

CAMERA_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4, C8 and CC are other segments).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD9)})
_SOS = 0xDA


@dataclass(frozen=True, slots=True)
class FrameLimits:
    max_bytes: int
    max_pixels: int


def check_camera_id(camera_id: str) -> None:
    if not camera_id:
        raise InvalidArgument("camera_id is required", reason="MISSING_CAMERA_ID")
    if CAMERA_ID.fullmatch(camera_id) is None:
        raise InvalidArgument(
            "camera_id must be 1-128 characters of letters, digits and ._:@/- starting with a "
            "letter or digit",
            reason="BAD_CAMERA_ID",
        )


def encoded_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG or JPEG header. ``InvalidArgument`` (BAD_IMAGE) when the data
    is neither, or its header is cut short or corrupt."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise InvalidArgument("PNG header is truncated or corrupt", reason="BAD_IMAGE")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8"):
        return _jpeg_dimensions(data)
    raise InvalidArgument("frame is neither JPEG nor PNG", reason="BAD_IMAGE")


def _jpeg_dimensions(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE_MARKERS:
            i += 2
            continue
        if marker == _SOS:
            break  # image data before any frame header
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > n or length < 8:
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if length < 2:
            break
        i += 2 + length
    raise InvalidArgument("JPEG header is truncated or corrupt", reason="BAD_IMAGE")


def _check_pixels(width: int, height: int, limits: FrameLimits) -> None:
    if width == 0 or height == 0:
        raise InvalidArgument("frame has zero width or height", reason="BAD_IMAGE")
    if width * height > limits.max_pixels:
        raise InvalidArgument(
            f"frame is {width}x{height} pixels; the limit is {limits.max_pixels} pixels",
            reason="IMAGE_TOO_LARGE",
        )


def frame_image(frame: ingest_pb2.Frame, limits: FrameLimits) -> bytes | RgbFrame:
    """The frame's image, ready for the analyzer: encoded bytes as they came (Triton decodes
    them), raw RGB as an H x W x 3 view of the message's bytes (no copy)."""
    kind = frame.WhichOneof("image")
    if kind == "encoded":
        data = frame.encoded
        if not data:
            raise InvalidArgument("frame is empty (zero bytes)", reason="EMPTY_IMAGE")
        if len(data) > limits.max_bytes:
            raise InvalidArgument(
                f"frame is {len(data)} bytes; the limit is {limits.max_bytes}",
                reason="IMAGE_TOO_LARGE",
            )
        _check_pixels(*encoded_dimensions(data), limits)
        return data
    if kind == "raw":
        raw = frame.raw
        if not raw.rgb:
            raise InvalidArgument("raw frame is empty (zero bytes)", reason="EMPTY_IMAGE")
        if len(raw.rgb) > limits.max_bytes:
            raise InvalidArgument(
                f"frame is {len(raw.rgb)} bytes; the limit is {limits.max_bytes}",
                reason="IMAGE_TOO_LARGE",
            )
        _check_pixels(raw.width, raw.height, limits)
        if len(raw.rgb) != raw.width * raw.height * 3:
            raise InvalidArgument(
                f"raw frame has {len(raw.rgb)} bytes; {raw.width}x{raw.height} RGB needs "
                f"{raw.width * raw.height * 3}",
                reason="BAD_IMAGE",
            )
        array: RgbFrame = np.frombuffer(raw.rgb, dtype=np.uint8).reshape(raw.height, raw.width, 3)
        return array
    raise InvalidArgument("frame carries no image (set encoded or raw)", reason="EMPTY_IMAGE")
