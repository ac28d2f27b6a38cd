"""``lfr evaluate`` end to end through the real services: the watchlist service enrols (real
Triton models, real Redis index), probes are analysed by Triton and searched with Redis KNN.

The tiny set is made here from registry-shipped photos: Grace Hopper in several variants (one
enrolled, the rest mated probes), the astronaut as a stranger, a generated image without a face
and a file that is not an image. What the report must say follows from that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from lfr.common import schema
from lfr.common.scores import DEFAULT_THRESHOLD
from lfr_cli.main import main as lfr_main
from lfr_cli.sample_photos import ASTRONAUT, GRACE_HOPPER
from lfr_cli.testing import RedisInstance, TritonInstance

from ..conftest import ServiceStarter

pytestmark = pytest.mark.integration

HOPPER_PROBES = ("2_half.jpg", "3_blurred.jpg", "4_brighter.jpg", "5_mirrored.jpg")


def _jpeg(image: np.ndarray[Any, Any]) -> bytes:
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


def make_tiny_set(root: Path) -> Path:
    hopper = cv2.imdecode(np.frombuffer(GRACE_HOPPER.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    people = root / "people" / "grace_hopper"
    people.mkdir(parents=True)
    variants = {
        "1_original.jpg": hopper,  # first in name order: the enrolment photo
        "2_half.jpg": cv2.resize(hopper, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "3_blurred.jpg": cv2.GaussianBlur(hopper, (0, 0), 2.0),
        "4_brighter.jpg": cv2.convertScaleAbs(hopper, alpha=1.2, beta=25),
        "5_mirrored.jpg": np.ascontiguousarray(hopper[:, ::-1]),
    }
    for name, image in variants.items():
        (people / name).write_bytes(_jpeg(image))
    distractors = root / "distractors"
    distractors.mkdir()
    (distractors / "astronaut.png").write_bytes(ASTRONAUT.read_bytes())
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    no_face = _jpeg(cv2.merge([gradient, gradient, gradient]))
    broken = b"\xff\xd8 this is not a JPEG at all"
    (distractors / "no_face.png").write_bytes(no_face)
    (distractors / "broken.jpg").write_bytes(broken)
    # An identity none of whose photos can be enrolled: refused by the watchlist service.
    nobody = root / "people" / "nobody"
    nobody.mkdir()
    (nobody / "1_no_face.png").write_bytes(no_face)
    (nobody / "2_broken.jpg").write_bytes(broken)
    return root


def check_report(doc: dict[str, Any]) -> None:
    # Hopper enrolled from her first photo, "nobody" not at all; four mated and one non-mated
    # search.
    assert doc["watchlist"]["entries"] == 1 and doc["watchlist"]["not_enrolled"] == ["nobody"]
    assert doc["searches"] == {"mated": 4, "nonmated": 1}
    # Hopper's probes are found at the default threshold, the stranger is not.
    default = doc["configured"]["default"]
    assert default["threshold"] == DEFAULT_THRESHOLD
    assert (default["true_positives"], default["tpir"], default["fnir"]) == (4, 1.0, 0.0)
    assert (default["false_positives"], default["fpir"], default["misidentified"]) == (0, 0.0, 0)
    mated = doc["rank1_scores"]["mated"]
    assert all(correct and score >= DEFAULT_THRESHOLD for score, correct in mated)
    [stranger] = doc["rank1_scores"]["nonmated"]
    assert stranger < DEFAULT_THRESHOLD
    # The no-face image and the unreadable file are listed, each with its reason, whether the
    # models (probes) or the watchlist service (enrolment) refused them.
    no_face = {(p["path"], p["role"], p["reason"]) for p in doc["images"]["no_usable_face"]}
    assert no_face == {
        ("distractors/no_face.png", "non-mated probe", "NO_FACE"),
        ("people/nobody/1_no_face.png", "enrolment", "NO_FACE"),
    }
    failures = {(p["path"], p["role"], p["reason"]) for p in doc["images"]["failures"]}
    assert failures == {
        ("distractors/broken.jpg", "non-mated probe", "BAD_IMAGE"),
        ("people/nobody/2_broken.jpg", "enrolment", "BAD_IMAGE"),
    }
    # Per-probe results (asked for): which file was taken for whom.
    found = {p["path"]: p["rank1_identity"] for p in doc["probes"]}
    assert found == {
        **{f"people/grace_hopper/{name}": "grace_hopper" for name in HOPPER_PROBES},
        "distractors/astronaut.png": "grace_hopper",  # nearest, but below the threshold
    }


def test_evaluate_with_a_private_suite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The default path: ``lfr evaluate`` starts and stops what it needs by itself."""
    folder = make_tiny_set(tmp_path / "photos")
    out = tmp_path / "out"
    code = lfr_main(["evaluate", str(folder), "--out", str(out), "--per-probe"])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    doc = json.loads((out / "evaluation.json").read_text())
    check_report(doc)
    assert doc["watchlist"]["entries_removed"] == 1
    assert (out / "det.png").read_bytes()[:4] == b"\x89PNG"
    # The terminal table says the same.
    assert "1 identity enrolled" in captured.out and "1 could not be enrolled" in captured.out
    assert "4 mated, 1 non-mated" in captured.out
    assert "distractors/broken.jpg (non-mated probe): BAD_IMAGE" in captured.out
    assert "distractors/no_face.png (non-mated probe): NO_FACE" in captured.out


def test_evaluate_against_a_running_suite_leaves_no_entries(
    tmp_path: Path,
    redis_server: RedisInstance,
    redis_client: Any,
    triton_server: TritonInstance,
    start_service: ServiceStarter,
) -> None:
    alert = start_service("alert", {"REDIS_URL": redis_server.url})
    watchlist = start_service(
        "watchlist",
        {"REDIS_URL": redis_server.url, "TRITON_URL": triton_server.url, "ALERT_ADDR": alert.addr},
    )
    folder = make_tiny_set(tmp_path / "photos")
    out = tmp_path / "out"
    code = lfr_main(
        [
            "evaluate",
            str(folder),
            "--out",
            str(out),
            "--per-probe",
            "--quiet",
            "--watchlist-addr",
            watchlist.addr,
            "--redis-url",
            redis_server.url,
            "--triton-url",
            triton_server.url,
        ]
    )
    assert code == 0
    doc = json.loads((out / "evaluation.json").read_text())
    check_report(doc)
    # The evaluation's entries are removed from the suite it borrowed.
    wl = doc["watchlist"]["watchlist_id"]
    assert doc["watchlist"]["entries_removed"] == 1
    assert list(redis_client.scan_iter(match=schema.entry_prefix(wl) + "*")) == []
