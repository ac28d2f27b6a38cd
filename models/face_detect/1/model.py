"""face_detect: one frame in; boxes, detector scores, 5-point landmarks, quality, aligned chips out.

Triton Python backend model (CPU). The same file serves ``face_detect`` (dlib HOG) and
``face_detect_cnn`` (dlib MMOD CNN); the detector is chosen by the model config parameter
``detector``. Inputs (exactly one per request):

* ``IMAGE``  UINT8 [-1]        encoded JPEG/PNG/... bytes
* ``FRAME``  UINT8 [-1, -1, 3] raw RGB pixels

Outputs, one row per face (sorted by detector score, best first):

* ``BOXES``     FP32 [-1, 4]            x1, y1, x2, y2 in frame pixels (clipped to the frame)
* ``SCORES``    FP32 [-1]               detector score (HOG SVM margin, or MMOD confidence)
* ``LANDMARKS`` FP32 [-1, 5, 2]         dlib 5-point landmarks (x, y) in frame pixels
* ``QUALITY``   FP32 [-1, 3]            face size px, blur (variance of Laplacian of chip), yaw deg
* ``CHIPS``     UINT8 [-1, 150, 150, 3] aligned RGB chips (dlib 5-point alignment, padding 0.25)
* ``FRAME_SIZE`` INT32 [2]              height, width of the decoded frame

A malformed or oversized input answers INVALID_ARG with ``[REASON] message``; the instance keeps
serving. Face data is never logged.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _param(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def weights_dir(config: dict[str, Any]) -> Path:
    """dlib weights from the ``face_recognition_models`` package (no network) or ``weights_dir``."""
    override = _param(config, "weights_dir", os.environ.get("LFR_FACE_WEIGHTS_DIR", ""))
    if override:
        return Path(override)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise pb_utils.TritonModelException(
            "face_recognition_models package not installed; pip install face-recognition-models"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class BadInput(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"[{reason}] {message}")


def _error(exc: BadInput) -> Any:
    return pb_utils.InferenceResponse(
        output_tensors=[], error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)
    )


def estimate_yaw(landmarks: np.ndarray) -> float:
    """Rough yaw in degrees from dlib's 5 points (0,1 one eye; 2,3 other eye; 4 nose base).

    The nose base sits about 0.55 inter-ocular distances in front of the eye line, so its
    sideways offset from the eye midpoint (measured along the eye line, which removes roll) is
    ``0.55 * d * sin(yaw)`` against an apparent eye distance of ``d * cos(yaw)``. 0 = frontal;
    the sign says which way the head is turned (positive: nose towards larger image x).
    """
    eye_a = landmarks[0:2].mean(axis=0)
    eye_b = landmarks[2:4].mean(axis=0)
    axis = eye_a - eye_b
    dist = float(np.hypot(axis[0], axis[1]))
    if dist < 1e-6:
        return 0.0
    axis = axis / dist
    if axis[0] < 0:  # measure along +x so the sign is in image terms
        axis = -axis
    offset = float(np.dot(landmarks[4] - (eye_a + eye_b) / 2.0, axis))
    return math.degrees(math.atan2(offset / 0.55, dist))


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", "face_detect")
        self.detector_kind = _param(config, "detector", "hog").lower()
        self.upsample = int(_param(config, "upsample", "1"))
        self.min_score = float(_param(config, "min_score", "0.0"))
        self.max_image_bytes = int(_param(config, "max_image_bytes", str(16 * 1024 * 1024)))
        self.max_image_pixels = int(_param(config, "max_image_pixels", str(4096 * 4096)))
        self.max_image_side = int(_param(config, "max_image_side", "8192"))
        self.max_faces = int(_param(config, "max_faces", "64"))
        self.detect_max_side = int(_param(config, "detect_max_side", "0"))
        if self.detector_kind not in ("hog", "cnn"):
            raise pb_utils.TritonModelException(
                f"{self.model_name}: parameter detector must be 'hog' or 'cnn', "
                f"not {self.detector_kind!r}"
            )
        # Decompression-bomb guard inside OpenCV itself; must be set before cv2 is imported.
        os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(self.max_image_pixels)
        import cv2
        import dlib

        self.cv2 = cv2
        self.dlib = dlib
        try:  # header-only size check before decoding (optional)
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = None  # our own limit applies; we never decode with Pillow
            self.pil_image: Any = Image
        except ImportError:
            self.pil_image = None
        cv2.setNumThreads(1)
        wdir = weights_dir(config)
        if self.detector_kind == "cnn":
            self.cnn = dlib.cnn_face_detection_model_v1(str(wdir / "mmod_human_face_detector.dat"))
        else:
            self.hog = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(
            str(wdir / "shape_predictor_5_face_landmarks.dat")
        )

    # -- input -------------------------------------------------------------------------------
    def _check_size(self, width: int, height: int) -> None:
        if width <= 0 or height <= 0:
            raise BadInput("EMPTY_IMAGE", f"image has zero size ({width}x{height})")
        if width * height > self.max_image_pixels or max(width, height) > self.max_image_side:
            raise BadInput(
                "IMAGE_TOO_LARGE",
                f"image is {width}x{height}, over the limit of {self.max_image_pixels} pixels "
                f"or {self.max_image_side} px per side",
            )

    def _check_header(self, data: np.ndarray) -> None:
        """Reject an over-limit image from its header, before spending memory on decoding it."""
        if self.pil_image is None:
            return
        try:
            with self.pil_image.open(io.BytesIO(data.tobytes())) as header:
                width, height = header.size
        except Exception:
            return  # not a format Pillow knows; OpenCV decides below
        self._check_size(int(width), int(height))

    def _frame(self, request: Any) -> np.ndarray:
        encoded = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        raw = pb_utils.get_input_tensor_by_name(request, "FRAME")
        if (encoded is None) == (raw is None):
            raise BadInput(
                "BAD_REQUEST", "send exactly one of IMAGE (encoded bytes) or FRAME (RGB)"
            )
        if encoded is not None:
            data = encoded.as_numpy().reshape(-1)
            if data.size == 0:
                raise BadInput("EMPTY_IMAGE", "IMAGE is empty (0 bytes)")
            if data.size > self.max_image_bytes:
                raise BadInput(
                    "IMAGE_TOO_LARGE",
                    f"IMAGE is {data.size} bytes, over the {self.max_image_bytes}-byte limit",
                )
            self._check_header(data)
            try:
                bgr = self.cv2.imdecode(
                    np.ascontiguousarray(data, dtype=np.uint8), self.cv2.IMREAD_COLOR
                )
            except self.cv2.error:
                bgr = None
            if bgr is None:
                raise BadInput(
                    "BAD_IMAGE",
                    "IMAGE is not a decodable image (JPEG/PNG/...), or its pixel count is over "
                    f"the {self.max_image_pixels}-pixel limit",
                )
            frame = self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)
        else:
            frame = raw.as_numpy()
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise BadInput("BAD_IMAGE", f"FRAME must be HxWx3 RGB, got shape {frame.shape}")
        self._check_size(int(frame.shape[1]), int(frame.shape[0]))
        return np.ascontiguousarray(frame, dtype=np.uint8)

    # -- detection ---------------------------------------------------------------------------
    def _detect(self, frame: np.ndarray) -> list[tuple[Any, float]]:
        scale = 1.0
        side = max(frame.shape[0], frame.shape[1])
        if 0 < self.detect_max_side < side:  # detect on a smaller copy; landmarks at full size
            scale = self.detect_max_side / side
            size = (round(frame.shape[1] * scale), round(frame.shape[0] * scale))
            frame = self.cv2.resize(frame, size, interpolation=self.cv2.INTER_AREA)
        if self.detector_kind == "cnn":
            found = [(d.rect, float(d.confidence)) for d in self.cnn(frame, self.upsample)]
        else:
            rects, scores, _ = self.hog.run(frame, self.upsample, self.min_score)
            found = list(zip(rects, (float(s) for s in scores), strict=True))
        if scale != 1.0:
            found = [
                (
                    self.dlib.rectangle(
                        round(r.left() / scale),
                        round(r.top() / scale),
                        round((r.right() + 1) / scale) - 1,
                        round((r.bottom() + 1) / scale) - 1,
                    ),
                    score,
                )
                for r, score in found
            ]
        found = [f for f in found if f[1] >= self.min_score]
        found.sort(key=lambda f: -f[1])
        return found[: self.max_faces]

    def analyze_frame(self, frame: np.ndarray) -> dict[str, np.ndarray]:
        height, width = frame.shape[:2]
        found = self._detect(frame)
        n = len(found)
        boxes = np.zeros((n, 4), np.float32)
        scores = np.zeros((n,), np.float32)
        landmarks = np.zeros((n, 5, 2), np.float32)
        quality = np.zeros((n, 3), np.float32)
        chips = np.zeros((n, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
        if n:
            shapes = self.dlib.full_object_detections()
            for i, (rect, score) in enumerate(found):
                shape = self.shape_predictor(frame, rect)
                shapes.append(shape)
                x1 = min(max(rect.left(), 0), width)
                y1 = min(max(rect.top(), 0), height)
                x2 = min(max(rect.right() + 1, 0), width)
                y2 = min(max(rect.bottom() + 1, 0), height)
                boxes[i] = (x1, y1, x2, y2)
                scores[i] = score
                landmarks[i] = [(p.x, p.y) for p in shape.parts()]
            for i, chip in enumerate(
                self.dlib.get_face_chips(frame, shapes, size=CHIP_SIZE, padding=CHIP_PADDING)
            ):
                chips[i] = chip
                gray = self.cv2.cvtColor(chip, self.cv2.COLOR_RGB2GRAY)
                blur = float(self.cv2.Laplacian(gray, self.cv2.CV_64F).var())
                size = float(min(boxes[i, 2] - boxes[i, 0], boxes[i, 3] - boxes[i, 1]))
                quality[i] = (size, blur, estimate_yaw(landmarks[i]))
        return {
            "BOXES": boxes,
            "SCORES": scores,
            "LANDMARKS": landmarks,
            "QUALITY": quality,
            "CHIPS": chips,
            "FRAME_SIZE": np.array([height, width], np.int32),
        }

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                outputs = self.analyze_frame(self._frame(request))
            except BadInput as exc:
                responses.append(_error(exc))
                continue
            except Exception as exc:  # keep serving; never echo face data
                responses.append(
                    pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(
                            f"[INTERNAL] {self.model_name} failed: {type(exc).__name__}"
                        ),
                    )
                )
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(k, v) for k, v in outputs.items()]
                )
            )
        return responses

    def finalize(self) -> None:
        pass
