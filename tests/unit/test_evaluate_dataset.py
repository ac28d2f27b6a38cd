"""Reading evaluation folders: both layouts, and bad input reported clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from lfr.common.errors import InvalidArgument
from lfr_cli.evaluate.dataset import Layout, NoteKind, load_dataset


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def test_people_and_distractors(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "people/Ann/10.jpg",
        "people/Ann/2.jpg",
        "people/Ann/1.JPEG",
        "people/Bob/01.png",
        "people/Bob/02.png",
        "distractors/Carl.jpg",
        "distractors/Dee.png",
        "README.md",
        "manifest.json",
    )
    ds = load_dataset(tmp_path)
    assert ds.layout is Layout.PEOPLE_AND_DISTRACTORS
    assert [s.identity for s in ds.subjects] == ["Ann", "Bob"]
    # Natural order: 1, 2, 10 (so the enrolment photo is the same on every run).
    assert [p.rel for p in ds.subjects[0].photos] == [
        "people/Ann/1.JPEG",
        "people/Ann/2.jpg",
        "people/Ann/10.jpg",
    ]
    assert [(p.identity, p.rel) for p in ds.nonmated] == [
        ("Carl", "distractors/Carl.jpg"),
        ("Dee", "distractors/Dee.png"),
    ]
    assert ds.image_count == 7
    assert ds.notes == ()  # top-level README/manifest are not part of the layout


def test_people_identity_with_one_photo_is_enrolled_and_noted(tmp_path: Path) -> None:
    touch(tmp_path, "people/Solo/a.jpg", "people/Pair/a.jpg", "people/Pair/b.jpg")
    ds = load_dataset(tmp_path)
    assert [s.identity for s in ds.subjects] == ["Pair", "Solo"]
    [note] = ds.notes
    assert note.kind is NoteKind.ONE_PHOTO and note.path == "people/Solo"
    assert "no mated probe" in note.message


def test_identity_folders(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "Ann/a.jpg",
        "Ann/b.jpg",
        "Solo/only.jpg",
        "Empty/notes.txt",
        "loose.png",
        "README.txt",
    )
    ds = load_dataset(tmp_path)
    assert ds.layout is Layout.IDENTITY_FOLDERS
    assert [s.identity for s in ds.subjects] == ["Ann"]
    # A one-photo identity and a loose photo are people seen once: non-mated probes.
    assert sorted((p.identity, p.rel) for p in ds.nonmated) == [
        ("Solo", "Solo/only.jpg"),
        ("loose", "loose.png"),
    ]
    kinds = {(n.kind, n.path) for n in ds.notes}
    assert (NoteKind.ONE_PHOTO, "Solo") in kinds
    assert (NoteKind.NOT_AN_IMAGE, "Empty/notes.txt") in kinds
    assert (NoteKind.NO_PHOTOS, "Empty") in kinds


def test_a_distractor_named_like_an_enrolled_identity_is_a_mated_probe(tmp_path: Path) -> None:
    touch(tmp_path, "people/Ann/1.jpg", "people/Ann/2.jpg", "distractors/Ann.jpg")
    ds = load_dataset(tmp_path)
    assert [p.rel for p in ds.subjects[0].photos][-1] == "distractors/Ann.jpg"
    assert ds.nonmated == ()
    assert [n.kind for n in ds.notes] == [NoteKind.DISTRACTOR_IS_ENROLLED]


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    touch(tmp_path, "people/Ann/1.jpg", "people/Ann/.DS_Store", ".hidden/x.jpg")
    ds = load_dataset(tmp_path)
    assert ds.image_count == 1 and ds.notes[0].kind is NoteKind.ONE_PHOTO


@pytest.mark.parametrize(
    "names",
    [
        (),  # empty folder
        ("README.md",),  # no image at all
        ("Ann/notes.txt",),  # identity folder without images
    ],
)
def test_folder_without_images_is_refused(tmp_path: Path, names: tuple[str, ...]) -> None:
    touch(tmp_path, *names)
    with pytest.raises(InvalidArgument, match="holds no images") as info:
        load_dataset(tmp_path)
    assert info.value.reason == "BAD_DATASET"


def test_nobody_to_enrol_is_refused(tmp_path: Path) -> None:
    touch(tmp_path, "Ann/a.jpg", "Bob/b.jpg")  # every identity seen once
    with pytest.raises(InvalidArgument, match="nobody to enrol"):
        load_dataset(tmp_path)
    other = tmp_path / "other"
    touch(other, "distractors/Carl.jpg")
    with pytest.raises(InvalidArgument, match="people/<identity>"):
        load_dataset(other)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="is not a folder"):
        load_dataset(tmp_path / "nope")
