"""Video sources through OpenCV's FFmpeg backend: files, RTSP, HTTP. Blocking calls; the source
runner calls them from its own worker thread. Frames are decoded in memory only (FFmpeg writes
no files for these inputs)."""

from __future__ import annotations

import cv2
import numpy as np

from lfr.common.errors import Unavailable
from lfr_ingest.ports import RgbFrame


class OpenCvVideoStream:
    def __init__(self, capture: cv2.VideoCapture) -> None:
        self._capture = capture

    def grab(self) -> bool:
        return bool(self._capture.grab())

    def retrieve(self) -> RgbFrame | None:
        ok, frame = self._capture.retrieve()
        if not ok or frame is None or frame.ndim != 3 or frame.shape[2] != 3:
            return None
        rgb: RgbFrame = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        return rgb

    def position_s(self) -> float | None:
        ms = float(self._capture.get(cv2.CAP_PROP_POS_MSEC))
        return ms / 1000 if ms >= 0 else None

    def fps(self) -> float:
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        return fps if 0 < fps < 1000 else 0.0

    def release(self) -> None:
        self._capture.release()


class OpenCvOpener:
    def open(self, uri: str, *, open_timeout_s: float, read_timeout_s: float) -> OpenCvVideoStream:
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_s * 1000),
        ]
        capture = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            raise Unavailable("the video could not be opened", reason="SOURCE_UNAVAILABLE")
        return OpenCvVideoStream(capture)
