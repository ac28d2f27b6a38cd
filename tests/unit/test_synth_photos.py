"""Photo sources of the harness: sample photos, labelled folders, face location."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lfr.common.errors import ConfigError
from lfr.inference.types import FaceDetection, UInt8Array
from lfr_cli.synth.harness import choose_watchlist, prepare
from lfr_cli.synth.photos import (
    centred_box,
    load_folder,
    load_sample_identities,
    locate_faces,
)
from lfr_cli.synth.scene import StreamConfig


def _write(path: Path, size: tuple[int, int] = (120, 100), value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((size[1], size[0], 3), value, np.uint8)
    cv2.imwrite(str(path), image)


def test_sample_identities_have_their_face_boxes_inside_the_photo() -> None:
    identities = load_sample_identities()
    assert [i.name for i in identities] == ["grace_hopper", "astronaut", "cameraman"]
    for identity in identities:
        (photo,) = identity.photos
        w, h = photo.size
        x1, y1, x2, y2 = photo.face_box
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert photo.image.ndim == 3 and photo.image.shape[2] == 3  # grey cameraman too
        assert photo.located_by == "known"
    assert identities[0].photos[0].encoded()[:3] == b"\xff\xd8\xff"  # the original JPEG


def test_unknown_sample_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown sample photo"):
        load_sample_identities(["nobody"])


def test_folder_layout_subfolders_and_loose_files(tmp_path: Path) -> None:
    _write(tmp_path / "Ada" / "01.jpg")
    _write(tmp_path / "Ada" / "02.png")
    _write(tmp_path / "Bob" / "01.jpg")
    _write(tmp_path / "Cy.jpg")
    (tmp_path / "Bob" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "Bob" / "notes.txt").write_text("ignored")
    (tmp_path / "Empty").mkdir()
    identities = load_folder(tmp_path)
    assert [(i.name, len(i.photos)) for i in identities] == [("Ada", 2), ("Bob", 1), ("Cy", 1)]
    photo = identities[0].photos[0]
    assert photo.located_by == "centre"
    assert photo.face_box == centred_box(120, 100)
    assert photo.encoded() == (tmp_path / "Ada" / "01.jpg").read_bytes()
    assert [i.name for i in load_folder(tmp_path, min_photos=2)] == ["Ada"]


def test_folder_without_photos_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no labelled photos"):
        load_folder(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_folder(tmp_path / "missing")


class FakeDetector:
    """Finds the faces it was told about, per photo width."""

    def __init__(self, boxes: dict[int, list[tuple[float, float, float, float]]]) -> None:
        self.boxes = boxes
        self.calls = 0

    async def detect(
        self, image: bytes | UInt8Array, *, timeout_s: float | None = None
    ) -> list[FaceDetection]:
        self.calls += 1
        assert isinstance(image, np.ndarray)
        landmarks = np.zeros((5, 2), np.float32)
        return [FaceDetection(b, 1.0, landmarks) for b in self.boxes.get(image.shape[1], [])]


async def test_locate_faces_picks_the_central_face_and_counts_misses(tmp_path: Path) -> None:
    _write(tmp_path / "Ada" / "01.jpg", size=(200, 200))
    _write(tmp_path / "Bob" / "01.jpg", size=(150, 150))
    identities = load_folder(tmp_path)
    edge_face, centre_face = (0.0, 0.0, 60.0, 60.0), (70.0, 60.0, 130.0, 120.0)
    fake = FakeDetector({200: [edge_face, centre_face]})
    located, misses = await locate_faces(identities, fake)  # type: ignore[arg-type]
    assert fake.calls == 2 and misses == 1
    assert located[0].photos[0].face_box == centre_face
    assert located[0].photos[0].located_by == "detector"
    assert located[1].photos[0].located_by == "centre"  # kept, with the assumed box
    again, _ = await locate_faces(located[:1], fake)  # type: ignore[arg-type]
    assert fake.calls == 2  # already located photos are not sent again
    assert again[0].photos[0].face_box == centre_face


def test_choose_watchlist_by_name_or_count(tmp_path: Path) -> None:
    for name, count in (("A", 3), ("B", 1), ("C", 2), ("D", 1)):
        for k in range(count):
            _write(tmp_path / name / f"{k}.jpg")
    identities = load_folder(tmp_path)
    assert choose_watchlist(identities, names=["B", "A", "B"]) == ["B", "A"]
    two = choose_watchlist(identities, count=2, seed=1)
    assert set(two) == {"A", "C"}  # people with a held-out photo first
    assert choose_watchlist(identities, count=2, seed=1) == two
    with pytest.raises(ConfigError, match="not among the photos"):
        choose_watchlist(identities, names=["Z"])
    with pytest.raises(ConfigError, match="cannot enrol 9"):
        choose_watchlist(identities, count=9)


def test_prepare_enrols_from_first_photos_and_walks_the_held_out_ones(tmp_path: Path) -> None:
    for name, count in (("A", 3), ("B", 1)):
        for k in range(count):
            _write(tmp_path / name / f"{k}.jpg", value=40 * (k + 1))
    identities = load_folder(tmp_path)
    config = StreamConfig(width=320, height=180, face_px=(30, 40), passes_per_identity=3)
    harness = prepare(identities, config, enrol_names=["A"], enrol_photos=1)
    assert [p.source for p in harness.enrol["A"]] == [str(tmp_path / "A" / "0.jpg")]
    a_photos = {p.photo_index for p in harness.scenario.passes if p.identity == "A"}
    assert a_photos <= {1, 2}
    assert harness.strangers == ["B"]
    assert set(harness.truth.passes) == {p.pass_id for p in harness.scenario.passes}
