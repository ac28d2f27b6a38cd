from __future__ import annotations

import json

import numpy as np
import pytest
import structlog

from lfr.common.logging import REDACTED, configure_logging, get_logger


def test_face_shaped_values_never_reach_the_output(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", fmt="json")
    embedding = np.random.default_rng(1).random(128, dtype=np.float32)
    get_logger("t").info(
        "probe",
        count=3,
        score=0.42,
        embedding=embedding,
        as_list=[float(x) for x in embedding],
        crop=b"\xff\xd8\xff\xe0jpeg",
        box=[1.0, 2.0, 3.0, 4.0],
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["count"] == 3
    assert record["score"] == 0.42
    assert record["box"] == [1.0, 2.0, 3.0, 4.0]  # four numbers are a position, not a face
    for key in ("embedding", "as_list", "crop"):
        assert record[key] == REDACTED
    assert f"{float(embedding[0]):.4f}"[:6] not in line
    structlog.reset_defaults()


def test_nested_and_numpy_scalar_face_data_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test", fmt="json")
    embedding = np.random.default_rng(2).random(128, dtype=np.float32)
    get_logger("t").info(
        "probe",
        scalars=list(embedding),  # numpy float32 scalars, not Python floats
        nested={"probe": {"crop": b"\xff\xd8"}},
        in_list=[embedding],
        names=["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"],
    )
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    for key in ("scalars", "nested", "in_list"):
        assert record[key] == REDACTED
    assert record["names"] == list("abcdefghij")
    structlog.reset_defaults()


def test_a_logged_exception_keeps_its_place_but_not_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test", fmt="json")
    handled = b"\xff\xd8 crop bytes of a stranger"
    try:
        try:
            raise KeyError(handled)
        except KeyError as exc:
            get_logger("t").error("rpc", error_type=type(exc).__name__, exc_info=exc)
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        structlog.reset_defaults()
    record = json.loads(line)
    assert "KeyError" in record["exception"]
    assert "test_common_logging.py" in record["exception"]
    assert "stranger" not in line
