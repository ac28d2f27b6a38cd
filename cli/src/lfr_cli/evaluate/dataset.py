"""Reading an evaluation folder: who is enrolled, which photos are mated and non-mated probes.

Two layouts are accepted (detected automatically):

* ``people/<identity>/<photo>`` + ``distractors/<identity>.<ext>`` — every identity under
  ``people/`` is enrolled from one photo, its other photos are mated probes; every distractor is
  a non-mated probe (the file name without extension is the identity; a ``distractors/<identity>/``
  folder is accepted too).
* ``<identity>/<photo>`` — identities with two or more photos are enrolled (one photo) and
  probed (the rest); identities with a single photo, and loose image files at the top, are
  non-mated probes.

Nothing here reads image bytes: unreadable or face-less files are found (and reported) by the
evaluation run. Photos are taken in natural name order (``2.jpg`` before ``10.jpg``), so a
re-run enrols the same photos.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from lfr.common.errors import InvalidArgument

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "DatasetNote",
    "Layout",
    "NoteKind",
    "Photo",
    "Subject",
    "load_dataset",
]

#: File name endings read as images (case-insensitive); anything else is listed and skipped.
IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

PEOPLE_DIR: Final = "people"
DISTRACTORS_DIR: Final = "distractors"


class Layout(StrEnum):
    PEOPLE_AND_DISTRACTORS = "people+distractors"
    IDENTITY_FOLDERS = "identity-folders"


class NoteKind(StrEnum):
    #: An identity with one photo: enrolled without a probe (people/), or a non-mated probe.
    ONE_PHOTO = "ONE_PHOTO"
    #: An identity folder without any image file.
    NO_PHOTOS = "NO_PHOTOS"
    #: A file whose name does not end like an image, or a folder where none is expected.
    NOT_AN_IMAGE = "NOT_AN_IMAGE"
    #: A distractor named like an enrolled identity: counted as a mated probe of it.
    DISTRACTOR_IS_ENROLLED = "DISTRACTOR_IS_ENROLLED"


@dataclass(frozen=True, slots=True)
class DatasetNote:
    kind: NoteKind
    path: str  #: relative to the dataset folder
    message: str


@dataclass(frozen=True, slots=True)
class Photo:
    path: Path
    identity: str
    rel: str  #: path relative to the dataset folder, used in every report

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True, slots=True)
class Subject:
    """An identity to enrol: the first photo that enrols is the gallery photo, the rest are
    its mated probes."""

    identity: str
    photos: tuple[Photo, ...]


@dataclass(frozen=True, slots=True)
class Dataset:
    root: Path
    layout: Layout
    subjects: tuple[Subject, ...]
    nonmated: tuple[Photo, ...]
    notes: tuple[DatasetNote, ...]

    @property
    def image_count(self) -> int:
        return sum(len(s.photos) for s in self.subjects) + len(self.nonmated)


def _natural_key(name: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


def _visible_children(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".")),
        key=lambda p: _natural_key(p.name),
    )


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


class _Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.notes: list[DatasetNote] = []

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def note(self, kind: NoteKind, path: Path, message: str) -> None:
        self.notes.append(DatasetNote(kind, self.rel(path), message))

    def photos_in(self, folder: Path, identity: str) -> list[Photo]:
        """Image files directly inside ``folder``; anything else is noted and skipped."""
        photos = []
        for child in _visible_children(folder):
            if child.is_file() and _is_image(child):
                photos.append(Photo(child, identity, self.rel(child)))
            else:
                what = "folder" if child.is_dir() else "file"
                self.note(
                    NoteKind.NOT_AN_IMAGE,
                    child,
                    f"skipped: a {what}, not an image ({', '.join(sorted(IMAGE_SUFFIXES))})",
                )
        if not photos:
            self.note(NoteKind.NO_PHOTOS, folder, "identity folder holds no image: skipped")
        return photos


def load_dataset(folder: Path) -> Dataset:
    """Read the folder's layout. Raises :class:`InvalidArgument` (reason ``BAD_DATASET``) when
    the folder is missing, holds no images, or leaves nobody to enrol."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InvalidArgument(f"{root} is not a folder", reason="BAD_DATASET")
    root = root.resolve()
    build = _Builder(root)
    if (root / PEOPLE_DIR).is_dir() or (root / DISTRACTORS_DIR).is_dir():
        layout = Layout.PEOPLE_AND_DISTRACTORS
        subjects, nonmated = _people_and_distractors(build)
    else:
        layout = Layout.IDENTITY_FOLDERS
        subjects, nonmated = _identity_folders(build)

    dataset = Dataset(root, layout, tuple(subjects), tuple(nonmated), tuple(build.notes))
    if dataset.image_count == 0:
        raise InvalidArgument(
            f"{root} holds no images; expected people/<identity>/<photo> and "
            f"distractors/<identity>.jpg, or <identity>/<photo> folders",
            reason="BAD_DATASET",
        )
    if not dataset.subjects:
        hint = (
            "put the enrolled identities under people/<identity>/"
            if layout is Layout.PEOPLE_AND_DISTRACTORS
            else "at least one <identity>/ folder needs two or more photos"
        )
        raise InvalidArgument(f"{root}: nobody to enrol; {hint}", reason="BAD_DATASET")
    return dataset


def _people_and_distractors(build: _Builder) -> tuple[list[Subject], list[Photo]]:
    root = build.root
    people: dict[str, list[Photo]] = {}
    people_dir = root / PEOPLE_DIR
    if people_dir.is_dir():
        for child in _visible_children(people_dir):
            if not child.is_dir():
                build.note(
                    NoteKind.NOT_AN_IMAGE, child, "skipped: people/ holds one folder per identity"
                )
                continue
            photos = build.photos_in(child, child.name)
            if photos:
                people[child.name] = photos
            if len(photos) == 1:
                build.note(
                    NoteKind.ONE_PHOTO,
                    child,
                    "only one photo: enrolled as a watch-list entry, no mated probe left",
                )

    nonmated: list[Photo] = []
    distractors_dir = root / DISTRACTORS_DIR
    if distractors_dir.is_dir():
        for child in _visible_children(distractors_dir):
            if child.is_dir():
                candidates = build.photos_in(child, child.name)
            elif _is_image(child):
                candidates = [Photo(child, child.stem, build.rel(child))]
            else:
                build.note(NoteKind.NOT_AN_IMAGE, child, "skipped: not an image file name")
                continue
            for photo in candidates:
                if photo.identity in people:
                    # Same label as an enrolled identity: searching it is a mated search.
                    people[photo.identity].append(photo)
                    build.note(
                        NoteKind.DISTRACTOR_IS_ENROLLED,
                        photo.path,
                        f"named like enrolled identity {photo.identity!r}: used as its mated "
                        "probe, not as a non-mated one",
                    )
                else:
                    nonmated.append(photo)
    subjects = [Subject(name, tuple(photos)) for name, photos in people.items()]
    return subjects, nonmated


def _identity_folders(build: _Builder) -> tuple[list[Subject], list[Photo]]:
    people: dict[str, list[Photo]] = {}
    loose: list[Photo] = []
    nonmated: list[Photo] = []
    for child in _visible_children(build.root):
        if child.is_file():
            if _is_image(child):  # a loose photo at the top: one person seen once
                loose.append(Photo(child, child.stem, build.rel(child)))
            continue  # README, manifest and the like
        if not child.is_dir():
            continue
        photos = build.photos_in(child, child.name)
        if len(photos) >= 2:
            people[child.name] = photos
        elif len(photos) == 1:
            nonmated.extend(photos)
            build.note(
                NoteKind.ONE_PHOTO,
                child,
                "only one photo: not enrolled, used as a non-mated probe",
            )
    for photo in loose:
        if photo.identity in people:
            people[photo.identity].append(photo)
            build.note(
                NoteKind.DISTRACTOR_IS_ENROLLED,
                photo.path,
                f"named like enrolled identity {photo.identity!r}: used as its mated probe",
            )
        else:
            nonmated.append(photo)
    return [Subject(name, tuple(photos)) for name, photos in people.items()], nonmated
