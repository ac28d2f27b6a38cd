"""face_embed: aligned 150x150 RGB face chips in; 128-d L2-normalised float32 embeddings out.

Triton Python backend model (CPU), dynamic batching: the requests Triton hands over together are
run through dlib's ResNet (``dlib_face_recognition_resnet_model_v1``, from the
``face_recognition_models`` package) as one batch, then split back per request.

* ``CHIPS``      UINT8 [batch, 150, 150, 3]  aligned chips (dlib 5-point alignment, padding 0.25)
* ``EMBEDDINGS`` FP32  [batch, 128]          unit-norm embeddings

Face data is never logged.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def weights_dir(config: dict[str, Any]) -> Path:
    override = _param(config, "weights_dir", os.environ.get("LFR_FACE_WEIGHTS_DIR", ""))
    if override:
        return Path(override)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise pb_utils.TritonModelException(
            "face_recognition_models package not installed; pip install face-recognition-models"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        import dlib

        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", "face_embed")
        path = weights_dir(config) / "dlib_face_recognition_resnet_model_v1.dat"
        self.encoder = dlib.face_recognition_model_v1(str(path))

    def _embed(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, 128), np.float32)
        batch = [np.ascontiguousarray(c) for c in chips]
        vectors = np.asarray(self.encoder.compute_face_descriptor(batch), dtype=np.float64)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def execute(self, requests: list[Any]) -> list[Any]:
        per_request = [
            pb_utils.get_input_tensor_by_name(r, "CHIPS").as_numpy().astype(np.uint8, copy=False)
            for r in requests
        ]
        try:
            vectors = self._embed(np.concatenate(per_request, axis=0))
        except Exception as exc:  # keep serving; never echo face data
            message = f"[INTERNAL] {self.model_name} failed: {type(exc).__name__}"
            error = pb_utils.TritonError(message)
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for chips in per_request:
            end = start + len(chips)
            out = pb_utils.Tensor("EMBEDDINGS", vectors[start:end])
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start = end
        return responses

    def finalize(self) -> None:
        pass
