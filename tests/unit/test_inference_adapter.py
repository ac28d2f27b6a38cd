"""Pure logic of the Triton adapter, the Triton launch command and the sample photos."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from lfr.common.errors import (
    ConfigError,
    DeadlineExceeded,
    InvalidArgument,
    LfrError,
    Unavailable,
)
from lfr.inference import (
    MODEL_VERSION,
    DetectedFace,
    FaceAnalyzer,
    FaceQuality,
    TritonFaceAnalyzer,
    map_triton_error,
)
from lfr_cli import sample_photos, triton_server


@pytest.mark.parametrize(
    ("status", "message", "cls", "reason"),
    [
        (
            "StatusCode.INVALID_ARGUMENT",
            "[EMPTY_IMAGE] IMAGE is empty",
            InvalidArgument,
            "EMPTY_IMAGE",
        ),
        (
            "StatusCode.INVALID_ARGUMENT",
            "unexpected shape for input",
            InvalidArgument,
            "BAD_REQUEST",
        ),
        (
            "StatusCode.DEADLINE_EXCEEDED",
            "Deadline Exceeded",
            DeadlineExceeded,
            "DEADLINE_EXCEEDED",
        ),
        ("StatusCode.UNAVAILABLE", "failed to connect", Unavailable, "UNAVAILABLE"),
        ("StatusCode.NOT_FOUND", "unknown model", Unavailable, "UNAVAILABLE"),
        ("StatusCode.INTERNAL", "[INTERNAL] face_embed failed", LfrError, "INTERNAL"),
    ],
)
def test_triton_errors_map_into_the_hierarchy(
    status: str, message: str, cls: type[LfrError], reason: str
) -> None:
    err = map_triton_error(InferenceServerException(message, status=status), what="triton m")
    assert type(err) is cls
    assert err.reason == reason
    assert err.message.startswith("triton m: ")
    assert "[" not in err.message  # the reason tag is lifted out of the message


def test_reason_tag_is_stripped_from_message() -> None:
    err = map_triton_error(
        InferenceServerException(
            "[IMAGE_TOO_LARGE] image is 9000x9000", status="StatusCode.INVALID_ARGUMENT"
        ),
        what="triton face_analyze",
    )
    assert err.message == "triton face_analyze: image is 9000x9000"


class _Recorder(TritonFaceAnalyzer):
    def __init__(self) -> None:
        super().__init__("127.0.0.1:1", max_embed_batch=4)
        self.calls: list[int] = []

    async def _infer(
        self, model: str, inputs: list[Any], outputs: Any, timeout_s: Any, parameters: Any = None
    ) -> Any:
        n = inputs[0].shape()[0]
        self.calls.append(n)

        class Result:
            def as_numpy(self, name: str) -> Any:
                vec = np.zeros((n, 128), np.float32)
                vec[:, 0] = 1.0
                return vec

        return Result()


async def test_embed_chips_splits_over_max_batch_and_keeps_order() -> None:
    client = _Recorder()
    out = await client.embed_chips(np.zeros((10, 150, 150, 3), np.uint8))
    assert sorted(client.calls) == [2, 4, 4]
    assert out.shape == (10, 128) and out.dtype == np.float32


@pytest.mark.parametrize(
    "chips",
    [
        np.zeros((1, 150, 150), np.uint8),
        np.zeros((1, 150, 150, 3), np.float32),
        np.zeros((1, 160, 150, 3), np.uint8),
    ],
)
async def test_embed_chips_rejects_bad_shapes(chips: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        await _Recorder().embed_chips(chips)
    assert info.value.reason == "BAD_CHIPS"


@pytest.mark.parametrize(
    "image", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), "x.jpg"]
)
async def test_analyze_rejects_bad_frames_before_sending(image: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        await _Recorder().analyze(image)
    assert info.value.reason == "BAD_IMAGE"


def test_ctor_validates() -> None:
    with pytest.raises(ValueError):
        TritonFaceAnalyzer("h:1", detector="yolo")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TritonFaceAnalyzer("h:1", timeout_s=0)
    assert TritonFaceAnalyzer("h:1", detector="cnn").detect_model == "face_detect_cnn"
    assert isinstance(TritonFaceAnalyzer("h:1"), FaceAnalyzer)


def test_face_reprs_hide_face_data() -> None:
    face = DetectedFace(
        box=(1.5, 2.5, 3.5, 4.5),
        landmarks=np.zeros((5, 2), np.float32),
        quality=FaceQuality(size_px=2.0, blur=3.0, yaw=4.0, detector_score=1.0),
        embedding=np.full(128, 0.0884, np.float32),
        chip=np.zeros((150, 150, 3), np.uint8),
    )
    assert "0.0884" not in repr(face) and "1.5" not in repr(face)
    assert MODEL_VERSION


# -- triton_server ---------------------------------------------------------------------------


def test_triton_command(tmp_path: Path) -> None:
    repo = triton_server.default_model_repository()
    argv, env = triton_server.triton_command(
        repo, grpc_port=1234, http_port=1235, metrics_port=1236, work_dir=tmp_path
    )
    assert Path(argv[0]).name == "tritonserver" and os.access(argv[0], os.X_OK)
    assert f"--model-repository={repo}" in argv
    assert (
        "--grpc-port=1234" in argv and "--http-port=1235" in argv and "--metrics-port=1236" in argv
    )
    assert "--model-control-mode=none" in argv
    backend = tmp_path / "backends" / "python"
    assert f"--backend-directory={tmp_path / 'backends'}" in argv
    for name in (
        "libtriton_python.so",
        "triton_python_backend_utils.py",
        "triton_python_backend_stub",
    ):
        assert (backend / name).is_file()
    assert "nvidia_pytriton.libs" in env["LD_LIBRARY_PATH"]
    assert any(Path(p, "numpy").is_dir() for p in env["PYTHONPATH"].split(os.pathsep))
    # idempotent, and explicit model lists use explicit mode
    argv2, _ = triton_server.triton_command(
        repo, grpc_port=1, http_port=2, metrics_port=3, work_dir=tmp_path, models=["face_embed"]
    )
    assert "--model-control-mode=explicit" in argv2 and "--load-model=face_embed" in argv2


def test_model_repository_has_the_models() -> None:
    repo = triton_server.default_model_repository()
    for model in ("face_detect", "face_detect_cnn", "face_embed", "face_analyze"):
        assert (repo / model / "config.pbtxt").is_file()
        assert (repo / model / "1" / "model.py").is_file()
    assert "max_batch_size: 64" in (repo / "face_embed" / "config.pbtxt").read_text()
    assert f'string_value: "{MODEL_VERSION}"' in (repo / "face_embed" / "config.pbtxt").read_text()


def test_model_repository_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(triton_server.MODEL_REPOSITORY_ENV, str(tmp_path))
    assert triton_server.default_model_repository() == tmp_path.resolve()
    monkeypatch.setenv(triton_server.MODEL_REPOSITORY_ENV, str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="LFR_MODEL_REPOSITORY"):
        triton_server.default_model_repository()


def test_missing_triton_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec

    def no_pytriton(name: str, *args: Any) -> Any:
        return None if name == "pytriton" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_pytriton)
    with pytest.raises(ConfigError, match="nvidia-pytriton"):
        triton_server.triton_command(
            tmp_path, grpc_port=1, http_port=2, metrics_port=3, work_dir=tmp_path / "w"
        )


def test_missing_stub_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"stub for Python 3\.99"):
        triton_server.find_triton("3.99")


# -- sample photos ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(sample_photos.PHOTOS))
def test_sample_photos_exist(name: str) -> None:
    photo = sample_photos.PHOTOS[name]
    data = sample_photos.photo_bytes(name)
    assert data[:4] in (b"\xff\xd8\xff\xe0", b"\x89PNG") and photo.path.is_file()


def test_unknown_sample_photo() -> None:
    with pytest.raises(ConfigError, match="unknown sample photo"):
        sample_photos.photo_path("mona_lisa")
