"""``FaceAnalyzer`` backed by the Triton model repository in ``models/`` (gRPC, asyncio).

The only module in lfr that imports ``tritonclient``. Models used:

* ``face_analyze`` — one round trip per frame (BLS: detect -> align -> embed)
* ``face_detect`` / ``face_detect_cnn`` — boxes, scores, landmarks (HOG / MMOD CNN)
* ``face_embed`` — aligned chips -> unit embeddings (dynamic batching, up to 64 per request)

Errors come back as ``lfr.common.errors`` types; the server's ``[REASON] message`` becomes
``InvalidArgument(message, reason=REASON)``. Nothing here logs or puts face data in messages.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any, Literal

import grpc
import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
from tritonclient.utils import InferenceServerException

from lfr.common.errors import (
    DeadlineExceeded,
    InvalidArgument,
    LfrError,
    ResourceExhausted,
    Unavailable,
)
from lfr.inference.types import (
    CHIP_SIZE,
    EMBEDDING_DIM,
    MODEL_VERSION,
    DetectedFace,
    FaceDetection,
    FaceQuality,
    Float32Array,
    UInt8Array,
)

__all__ = ["TritonFaceAnalyzer", "map_triton_error"]

Detector = Literal["hog", "cnn"]

_DETECT_OUTPUTS = ("BOXES", "SCORES", "LANDMARKS")
_ANALYZE_OUTPUTS = ("BOXES", "SCORES", "LANDMARKS", "QUALITY", "CHIPS", "EMBEDDINGS")
_REASON = re.compile(r"^\[([A-Z][A-Z0-9_]*)\]\s*(.*)$", re.DOTALL)


def map_triton_error(exc: InferenceServerException, *, what: str) -> LfrError:
    """Translate a failed Triton call into the lfr hierarchy; ``what`` names the call."""
    status = str(exc.status() or "")
    message = str(exc.message() or "")
    found = _REASON.match(message)
    reason, text = (found.group(1), found.group(2)) if found else (None, message)
    full = f"{what}: {text}"
    if status.endswith("INVALID_ARGUMENT"):
        return InvalidArgument(full, reason=reason or "BAD_REQUEST")
    if status.endswith("DEADLINE_EXCEEDED"):
        return DeadlineExceeded(f"{what}: no answer within the deadline")
    if status.endswith(("UNAVAILABLE", "NOT_FOUND", "CANCELLED")) or not status:
        # NOT_FOUND: model not loaded; no status: the channel never connected.
        return Unavailable(f"{what}: Triton unavailable: {text}")
    if status.endswith("RESOURCE_EXHAUSTED"):
        return ResourceExhausted(full)
    return LfrError(full, reason=reason or "TRITON_ERROR")


class TritonFaceAnalyzer:
    """Talks to Triton over gRPC. Create and use it inside one event loop; ``close()`` when done.

    ``url`` is ``host:port`` of Triton's gRPC endpoint. ``timeout_s`` is the default deadline
    of every call. ``detector`` picks HOG (``face_detect``) or the MMOD CNN
    (``face_detect_cnn``) for ``analyze`` and ``detect``.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        detector: Detector = "hog",
        analyze_model: str = "face_analyze",
        detect_model: str = "face_detect",
        cnn_detect_model: str = "face_detect_cnn",
        embed_model: str = "face_embed",
        max_embed_batch: int = 64,
    ) -> None:
        if detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn', not {detector!r}")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.url = url
        self.timeout_s = timeout_s
        self.detector: Detector = detector
        self.analyze_model = analyze_model
        self.detect_model = cnn_detect_model if detector == "cnn" else detect_model
        self.embed_model = embed_model
        self.max_embed_batch = max_embed_batch
        self._client: aioclient.InferenceServerClient | None = None

    # -- plumbing ----------------------------------------------------------------------------
    def _get_client(self) -> aioclient.InferenceServerClient:
        if self._client is None:
            self._client = aioclient.InferenceServerClient(self.url)
        return self._client

    async def _infer(
        self,
        model: str,
        inputs: list[grpcclient.InferInput],
        outputs: Sequence[str],
        timeout_s: float | None,
        parameters: dict[str, Any] | None = None,
    ) -> Any:
        deadline = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await self._get_client().infer(
                model,
                inputs,
                outputs=[grpcclient.InferRequestedOutput(name) for name in outputs],
                client_timeout=deadline,
                parameters=parameters,
            )
        except InferenceServerException as exc:
            raise map_triton_error(exc, what=f"triton {model}") from None
        except grpc.RpcError as exc:  # pragma: no cover - tritonclient wraps these
            raise Unavailable(f"triton {model}: {exc}") from None

    @staticmethod
    def _image_input(image: bytes | UInt8Array) -> grpcclient.InferInput:
        if isinstance(image, bytes | bytearray | memoryview):
            data = np.frombuffer(image, dtype=np.uint8)
            inp = grpcclient.InferInput("IMAGE", [int(data.size)], "UINT8")
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise InvalidArgument(
                    f"frame must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}",
                    reason="BAD_IMAGE",
                )
            data = np.ascontiguousarray(image)
            inp = grpcclient.InferInput("FRAME", [int(d) for d in data.shape], "UINT8")
        else:
            raise InvalidArgument(
                f"image must be encoded bytes or an RGB array, not {type(image).__name__}",
                reason="BAD_IMAGE",
            )
        inp.set_data_from_numpy(data)
        return inp

    @staticmethod
    def _out(result: Any, name: str) -> npt.NDArray[Any]:
        arr = result.as_numpy(name)
        if arr is None:
            raise LfrError(f"triton response lacks output {name}", reason="TRITON_ERROR")
        return np.asarray(arr)

    # -- FaceAnalyzer ------------------------------------------------------------------------
    async def analyze(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[DetectedFace]:
        """Every face of one frame, with quality, aligned chip and embedding: one round trip."""
        result = await self._infer(
            self.analyze_model,
            [self._image_input(image)],
            _ANALYZE_OUTPUTS,
            timeout_s,
            parameters={"detector": self.detector},
        )
        boxes = self._out(result, "BOXES")
        scores = self._out(result, "SCORES")
        landmarks = self._out(result, "LANDMARKS").astype(np.float32, copy=False)
        quality = self._out(result, "QUALITY")
        chips = self._out(result, "CHIPS").astype(np.uint8, copy=False)
        embeddings = self._out(result, "EMBEDDINGS").astype(np.float32, copy=False)
        return [
            DetectedFace(
                box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                landmarks=landmarks[i],
                quality=FaceQuality(
                    size_px=float(quality[i, 0]),
                    blur=float(quality[i, 1]),
                    yaw=float(quality[i, 2]),
                    detector_score=float(scores[i]),
                ),
                embedding=embeddings[i],
                chip=chips[i],
            )
            for i, b in enumerate(boxes)
        ]

    async def detect(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[FaceDetection]:
        """Boxes, detector scores and 5-point landmarks only (no chips, no embeddings)."""
        result = await self._infer(
            self.detect_model, [self._image_input(image)], _DETECT_OUTPUTS, timeout_s
        )
        boxes = self._out(result, "BOXES")
        scores = self._out(result, "SCORES")
        landmarks = self._out(result, "LANDMARKS").astype(np.float32, copy=False)
        return [
            FaceDetection(
                box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                score=float(scores[i]),
                landmarks=landmarks[i],
            )
            for i, b in enumerate(boxes)
        ]

    async def embed_chips(
        self, chips: UInt8Array, *, timeout_s: float | None = None
    ) -> Float32Array:
        """(N, 150, 150, 3) uint8 aligned RGB chips -> (N, 128) float32 unit embeddings."""
        if (
            not isinstance(chips, np.ndarray)
            or chips.dtype != np.uint8
            or chips.ndim != 4
            or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3)
        ):
            got = f"{chips.dtype} {chips.shape}" if isinstance(chips, np.ndarray) else type(chips)
            raise InvalidArgument(
                f"chips must be an (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 array, got {got}",
                reason="BAD_CHIPS",
            )
        if len(chips) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        parts = [
            chips[start : start + self.max_embed_batch]
            for start in range(0, len(chips), self.max_embed_batch)
        ]
        results = await asyncio.gather(*(self._embed_part(p, timeout_s) for p in parts))
        return np.concatenate(results, axis=0)

    async def _embed_part(self, chips: UInt8Array, timeout_s: float | None) -> Float32Array:
        data = np.ascontiguousarray(chips)
        inp = grpcclient.InferInput("CHIPS", [int(d) for d in data.shape], "UINT8")
        inp.set_data_from_numpy(data)
        result = await self._infer(self.embed_model, [inp], ("EMBEDDINGS",), timeout_s)
        return self._out(result, "EMBEDDINGS").astype(np.float32, copy=False)

    async def ready(self) -> bool:
        """Server ready and the three models this adapter uses loaded; never raises."""
        deadline = min(self.timeout_s, 2.0)
        try:
            client = self._get_client()
            if not await client.is_server_ready(client_timeout=deadline):
                return False
            for model in (self.analyze_model, self.detect_model, self.embed_model):
                if not await client.is_model_ready(model, client_timeout=deadline):
                    return False
        except (InferenceServerException, grpc.RpcError, OSError):
            return False
        return True

    async def model_version(self, *, timeout_s: float | None = None) -> str:
        """The embedding model's version string as the server reports it (``face_embed``'s
        config parameter ``model_version``); :data:`MODEL_VERSION` if it sets none."""
        deadline = self.timeout_s if timeout_s is None else timeout_s
        try:
            config = await self._get_client().get_model_config(
                self.embed_model, as_json=True, client_timeout=deadline
            )
        except InferenceServerException as exc:
            raise map_triton_error(exc, what=f"triton {self.embed_model} config") from None
        params = config.get("config", {}).get("parameters", {})
        version = params.get("model_version", {}).get("string_value", "")
        return str(version) if version else MODEL_VERSION

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
