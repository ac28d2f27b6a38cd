"""face_analyze: every face of one frame — box, score, landmarks, quality, chip, embedding — in ONE
Triton request.

Business Logic Scripting (BLS): forwards the frame to a detect model (``face_detect`` for HOG,
``face_detect_cnn`` for the MMOD CNN; request parameter ``detector`` = ``hog``|``cnn``, default
from the config), then sends the aligned chips it got back to ``face_embed``. Why BLS rather than
one fused model: each model keeps one copy of its weights and its own instance count, and the
chips of concurrent frames (and enrolment's direct ``face_embed`` calls) meet in ``face_embed``'s
dynamic batcher; the cost is one in-server hop per stage (shared memory, sub-millisecond).

Inputs and outputs are those of ``face_detect`` plus ``EMBEDDINGS`` FP32 [-1, 128]. Errors of the
detect model (``[REASON] message``, INVALID_ARG) are passed through unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

DETECT_OUTPUTS = ["BOXES", "SCORES", "LANDMARKS", "QUALITY", "CHIPS", "FRAME_SIZE"]
# Reasons the detect model gives for a bad request; BLS drops the error code, so map them back.
INVALID_INPUT_REASONS = ("[EMPTY_IMAGE]", "[BAD_IMAGE]", "[IMAGE_TOO_LARGE]", "[BAD_REQUEST]")


def _param(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def _error(message: str, code: Any = None) -> Any:
    err = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(output_tensors=[], error=err)


class Failed(Exception):
    def __init__(self, message: str, code: Any) -> None:
        super().__init__(message)
        self.code = code


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", "face_analyze")
        self.default_detector = _param(config, "default_detector", "hog")
        detectors = _param(config, "detectors", "hog=face_detect,cnn=face_detect_cnn")
        self.detect_models = dict(item.split("=", 1) for item in detectors.split(","))
        self.embed_model = _param(config, "embed_model", "face_embed")
        if self.default_detector not in self.detect_models:
            raise pb_utils.TritonModelException(
                f"{self.model_name}: default_detector {self.default_detector!r} is not one of "
                f"{sorted(self.detect_models)}"
            )

    def _call(self, model: str, inputs: list[Any], outputs: list[str]) -> Any:
        response = pb_utils.InferenceRequest(
            model_name=model, inputs=inputs, requested_output_names=outputs
        ).exec()
        if response.has_error():
            message = response.error().message()
            if message.startswith(INVALID_INPUT_REASONS):
                raise Failed(message, pb_utils.TritonError.INVALID_ARG)
            raise Failed(message, pb_utils.TritonError.INTERNAL)
        return response

    def _one(self, request: Any) -> Any:
        params = json.loads(request.parameters() or "{}")
        detector = str(params.get("detector", self.default_detector))
        model = self.detect_models.get(detector)
        if model is None:
            raise Failed(
                f"[BAD_REQUEST] parameter detector must be one of {sorted(self.detect_models)}",
                pb_utils.TritonError.INVALID_ARG,
            )
        inputs = [
            t
            for t in (
                pb_utils.get_input_tensor_by_name(request, "IMAGE"),
                pb_utils.get_input_tensor_by_name(request, "FRAME"),
            )
            if t is not None
        ]
        if len(inputs) != 1:
            raise Failed(
                "[BAD_REQUEST] send exactly one of IMAGE (encoded bytes) or FRAME (RGB)",
                pb_utils.TritonError.INVALID_ARG,
            )
        detected = self._call(model, inputs, DETECT_OUTPUTS)
        outputs = {n: pb_utils.get_output_tensor_by_name(detected, n) for n in DETECT_OUTPUTS}
        chips = outputs["CHIPS"].as_numpy()
        if len(chips):
            embedded = self._call(
                self.embed_model, [pb_utils.Tensor("CHIPS", chips)], ["EMBEDDINGS"]
            )
            embeddings = pb_utils.get_output_tensor_by_name(embedded, "EMBEDDINGS").as_numpy()
        else:
            embeddings = np.zeros((0, 128), np.float32)
        tensors = [pb_utils.Tensor(name, outputs[name].as_numpy()) for name in DETECT_OUTPUTS]
        tensors.append(pb_utils.Tensor("EMBEDDINGS", embeddings))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                responses.append(self._one(request))
            except Failed as exc:
                responses.append(_error(str(exc), exc.code))
            except Exception as exc:  # keep serving; never echo face data
                message = f"[INTERNAL] {self.model_name} failed: {type(exc).__name__}"
                responses.append(_error(message))
        return responses

    def finalize(self) -> None:
        pass
