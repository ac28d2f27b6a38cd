"""The Triton model code (``models/*/1/model.py``) run in-process against a stand-in for
``triton_python_backend_utils``: input validation, yaw, batching split. No Triton needed."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from lfr_cli.sample_photos import GRACE_HOPPER

MODELS = Path(__file__).resolve().parents[2] / "models"


class _TritonError(Exception):
    INVALID_ARG = 3
    INTERNAL = 13

    def __init__(self, msg: str, code: int = 13) -> None:
        super().__init__(msg)
        self.msg, self._code = msg, code

    def message(self) -> str:
        return self.msg

    def code(self) -> int:
        return self._code


class _Tensor:
    def __init__(self, name: str, array: npt.NDArray[Any]) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> npt.NDArray[Any]:
        return self._array


class _Response:
    def __init__(self, output_tensors: list[_Tensor], error: _TritonError | None = None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error


class _Request:
    def __init__(self, **inputs: npt.NDArray[Any]) -> None:
        self.inputs = {k: _Tensor(k, v) for k, v in inputs.items()}


def _fake_pb_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.TritonError = _TritonError  # type: ignore[attr-defined]
    mod.TritonModelException = RuntimeError  # type: ignore[attr-defined]
    mod.Tensor = _Tensor  # type: ignore[attr-defined]
    mod.InferenceResponse = _Response  # type: ignore[attr-defined]
    mod.get_input_tensor_by_name = lambda req, name: req.inputs.get(name)  # type: ignore[attr-defined]
    return mod


def _module(model: str) -> Any:
    path = MODELS / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"_lfr_test_{model}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load(model: str, config: dict[str, Any]) -> Any:
    module = _module(model)
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(config), "model_name": model})
    return module, instance


@pytest.fixture(autouse=True, scope="module")
def _pb_utils() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
        # face_detect sets this for its own process; undo it so later subprocesses don't inherit.
        mp.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", str(2**30))
        yield


def _params(**kv: str) -> dict[str, Any]:
    return {"parameters": {k: {"string_value": v} for k, v in kv.items()}}


@pytest.fixture(scope="module")
def detect() -> Any:
    return _load(
        "face_detect",
        _params(
            detector="hog",
            upsample="1",
            max_image_bytes="100000",
            max_image_pixels="1000000",
            max_image_side="2000",
        ),
    )[1]


def _run(model: Any, **inputs: npt.NDArray[Any]) -> _Response:
    (response,) = model.execute([_Request(**inputs)])
    assert isinstance(response, _Response)
    return response


def test_hopper_outputs_are_well_formed(detect: Any) -> None:
    data = np.frombuffer(GRACE_HOPPER.read_bytes(), np.uint8)
    out = _run(detect, IMAGE=data)
    assert out.error is None
    assert out.outputs["BOXES"].shape == (1, 4)
    assert out.outputs["LANDMARKS"].shape == (1, 5, 2)
    assert out.outputs["CHIPS"].shape == (1, 150, 150, 3)
    assert out.outputs["FRAME_SIZE"].tolist() == [600, 512]
    size, blur, yaw = out.outputs["QUALITY"][0]
    assert 150 < size < 250 and blur > 50 and abs(yaw) < 15


@pytest.mark.parametrize(
    ("inputs", "reason"),
    [
        ({"IMAGE": np.zeros(0, np.uint8)}, "EMPTY_IMAGE"),
        ({"IMAGE": np.frombuffer(b"definitely not a picture", np.uint8)}, "BAD_IMAGE"),
        ({"IMAGE": np.zeros(100_001, np.uint8)}, "IMAGE_TOO_LARGE"),
        ({"FRAME": np.zeros((0, 0, 3), np.uint8)}, "EMPTY_IMAGE"),
        ({"FRAME": np.zeros((10, 0, 3), np.uint8)}, "EMPTY_IMAGE"),
        ({"FRAME": np.zeros((1001, 1000, 3), np.uint8)}, "IMAGE_TOO_LARGE"),
        ({"FRAME": np.zeros((10, 2001, 3), np.uint8)}, "IMAGE_TOO_LARGE"),
        ({}, "BAD_REQUEST"),
        ({"FRAME": np.zeros((8, 8, 3), np.uint8), "IMAGE": np.zeros(3, np.uint8)}, "BAD_REQUEST"),
    ],
)
def test_bad_input_is_invalid_arg_naming_the_problem(
    detect: Any, inputs: dict[str, npt.NDArray[Any]], reason: str
) -> None:
    out = _run(detect, **inputs)
    assert out.error is not None
    assert out.error.code() == _TritonError.INVALID_ARG
    assert out.error.message().startswith(f"[{reason}] ")


def test_over_limit_png_is_refused_from_its_header(detect: Any) -> None:
    ok, png = cv2.imencode(".png", np.zeros((1500, 1500, 3), np.uint8))  # small file, 2.25 Mpx
    assert ok and png.size < 100_000
    out = _run(detect, IMAGE=png.reshape(-1))
    assert out.error is not None and out.error.message().startswith("[IMAGE_TOO_LARGE] ")
    assert "1500x1500" in out.error.message()


def test_a_bad_request_does_not_spoil_the_next(detect: Any) -> None:
    bad, good = detect.execute(
        [
            _Request(IMAGE=np.zeros(0, np.uint8)),
            _Request(IMAGE=np.frombuffer(GRACE_HOPPER.read_bytes(), np.uint8)),
        ]
    )
    assert bad.error is not None and good.error is None and len(good.outputs["BOXES"]) == 1


def test_detect_max_side_finds_the_same_face_on_a_shrunk_copy() -> None:
    _, small = _load("face_detect", _params(upsample="0", detect_max_side="700"))
    _, full = _load("face_detect", _params(upsample="0"))
    bgr = cv2.imdecode(np.frombuffer(GRACE_HOPPER.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    frame = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (1024, 1200))
    a = _run(small, FRAME=frame).outputs
    b = _run(full, FRAME=frame).outputs
    assert a["BOXES"].shape == b["BOXES"].shape == (1, 4)
    assert a["FRAME_SIZE"].tolist() == [1200, 1024]
    np.testing.assert_allclose(a["BOXES"], b["BOXES"], atol=40)
    np.testing.assert_allclose(a["LANDMARKS"], b["LANDMARKS"], atol=6)


def test_unknown_detector_fails_at_load() -> None:
    with pytest.raises(RuntimeError, match="detector"):
        _load("face_detect", _params(detector="yolo"))


@pytest.mark.parametrize(("nose_dx", "sign"), [(0.0, 0), (8.0, 1), (-8.0, -1)])
def test_yaw_sign_and_roll_invariance(nose_dx: float, sign: int) -> None:
    module = _module("face_detect")
    pts = np.array([[70, 50], [55, 50], [25, 50], [40, 50], [47.5 + nose_dx, 80]], np.float32)
    yaw = module.estimate_yaw(pts)
    assert (yaw > 5) if sign > 0 else (yaw < -5) if sign < 0 else abs(yaw) < 1e-6
    theta = np.radians(20)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    assert module.estimate_yaw(pts @ rot.T) == pytest.approx(yaw, abs=1e-3)


def test_embed_splits_a_dynamic_batch_back_per_request() -> None:
    _, embed = _load("face_embed", {})
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 255, size=(3, 150, 150, 3), dtype=np.uint8)
    first, second = embed.execute([_Request(CHIPS=chips[:1]), _Request(CHIPS=chips[1:])])
    assert first.outputs["EMBEDDINGS"].shape == (1, 128)
    assert second.outputs["EMBEDDINGS"].shape == (2, 128)
    both = np.concatenate([first.outputs["EMBEDDINGS"], second.outputs["EMBEDDINGS"]])
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    (alone,) = embed.execute([_Request(CHIPS=chips[1:2])])
    np.testing.assert_allclose(alone.outputs["EMBEDDINGS"][0], both[1], atol=1e-5)
