"""Face photos the harness builds its streams from: who, which photos, and where the face is.

Sources:

* the registry-shipped sample photos (:mod:`lfr_cli.sample_photos`) — the default;
* any folder of labelled photos: ``<folder>/<identity>/<photo>.jpg`` (one subfolder per person),
  and loose ``<folder>/<identity>.jpg`` files, each a person seen in one photo (a folder of
  distractors is laid out like that).

Each photo needs its face's box, so the harness can crop it generously, paste it into scenes
and know where it is (ground truth). The sample photos carry known boxes; other photos are
located once at build time with the real detector (:func:`locate_faces`, through any
:class:`~lfr.inference.FaceAnalyzer`) or, without one, assumed centred (true of LFW-style crops).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import cv2
import numpy as np
from PIL import Image

from lfr.common.errors import ConfigError, LfrError
from lfr.inference.types import FaceAnalyzer, UInt8Array
from lfr_cli import sample_photos

__all__ = [
    "IMAGE_SUFFIXES",
    "SAMPLE_FACE_BOXES",
    "Box",
    "FacePhoto",
    "Identity",
    "centred_box",
    "decode_image",
    "load_folder",
    "load_sample_identities",
    "locate_faces",
]

Box = tuple[float, float, float, float]
LocatedBy = Literal["known", "detector", "centre"]

IMAGE_SUFFIXES: Final = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: Face boxes (x1, y1, x2, y2) of the sample photos, found once with dlib (HOG for Hopper and
#: the astronaut; the MMOD CNN for the cameraman, whom HOG misses). Known boxes keep the default
#: streams independent of a running detector. The astronaut photo also holds a second HOG
#: "face" (a patch of the flag), which the generous crop leaves out.
SAMPLE_FACE_BOXES: Final[dict[str, Box]] = {
    "grace_hopper": (180.0, 139.0, 366.0, 325.0),
    "astronaut": (175.0, 76.0, 265.0, 166.0),
    "cameraman": (189.0, 117.0, 257.0, 185.0),
}

#: Side of a centred face box relative to the photo's shorter side (LFW: ~100 px of 250).
CENTRED_FACE_FRACTION: Final = 0.42


@dataclass(frozen=True, eq=False)
class FacePhoto:
    """One photo of one person, decoded, with the box of that person's face."""

    identity: str
    source: str  #: file path, or ``sample:<name>``
    image: UInt8Array = field(repr=False)  #: HxWx3 uint8 RGB
    face_box: Box
    located_by: LocatedBy

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def encoded(self) -> bytes:
        """The photo as encoded bytes for enrolment: the original file when there is one."""
        if self.source.startswith("sample:"):
            return sample_photos.photo_bytes(self.source.removeprefix("sample:"))
        path = Path(self.source)
        if path.is_file():
            return path.read_bytes()
        return encode_png(self.image)

    def with_box(self, box: Box, located_by: LocatedBy) -> FacePhoto:
        return dataclasses.replace(self, face_box=box, located_by=located_by)


@dataclass(frozen=True)
class Identity:
    """A person and their photos (sorted by source, so runs are reproducible)."""

    name: str
    photos: tuple[FacePhoto, ...]


def decode_image(data: bytes, what: str) -> UInt8Array:
    """Encoded bytes → HxWx3 uint8 RGB (grey images become three equal channels). Pillow (a
    matplotlib dependency) rather than OpenCV: libpng under OpenCV prints warnings about the
    sample PNGs' colour profiles straight to the terminal."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = np.asarray(opened.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError):
        raise ConfigError(f"{what} is not an image that can be read") from None
    return np.ascontiguousarray(image)


def encode_png(image: UInt8Array) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise LfrError("PNG encoding failed")
    return bytes(buf)


def centred_box(width: int, height: int, fraction: float = CENTRED_FACE_FRACTION) -> Box:
    """A square face box in the middle of the photo, nudged up a little (faces sit above the
    centre of a head-and-shoulders photo)."""
    side = fraction * min(width, height)
    cx, cy = width / 2.0, height / 2.0 - 0.03 * height
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def load_sample_identities(names: Iterable[str] | None = None) -> list[Identity]:
    """The registry-shipped photos, one identity each, with their known face boxes."""
    chosen = list(names) if names is not None else list(sample_photos.PHOTOS)
    identities = []
    for name in chosen:
        photo = sample_photos.PHOTOS.get(name)
        if photo is None:
            raise ConfigError(
                f"unknown sample photo {name!r}; known: {', '.join(sample_photos.PHOTOS)}"
            )
        image = decode_image(photo.read_bytes(), f"sample photo {name}")
        identities.append(
            Identity(
                name,
                (FacePhoto(name, f"sample:{name}", image, SAMPLE_FACE_BOXES[name], "known"),),
            )
        )
    return identities


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_folder(folder: Path, *, min_photos: int = 1) -> list[Identity]:
    """Identities of a folder of labelled photos (see the module doc). Every face is first
    assumed centred; :func:`locate_faces` refines the boxes with a detector.

    Unreadable images are skipped; an identity with fewer than ``min_photos`` readable photos is
    left out. A folder with no identity at all is a :class:`ConfigError`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"photo folder {folder} does not exist or is not a folder")
    groups: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _image_files(sub)
        if files:
            groups[sub.name] = files
    for loose in _image_files(folder):
        groups.setdefault(loose.stem, []).append(loose)
    identities = []
    for name, files in sorted(groups.items()):
        photos = []
        for path in files:
            try:
                image = decode_image(path.read_bytes(), str(path))
            except (ConfigError, OSError):
                continue
            h, w = image.shape[:2]
            photos.append(FacePhoto(name, str(path), image, centred_box(w, h), "centre"))
        if len(photos) >= min_photos:
            identities.append(Identity(name, tuple(photos)))
    if not identities:
        raise ConfigError(
            f"no labelled photos in {folder}; lay it out as <identity>/<photo>.jpg "
            "(or <identity>.jpg for people seen once)"
        )
    return identities


def _pick_face(boxes: Sequence[Box], width: int, height: int) -> Box | None:
    """The labelled person's face: big and near the centre (LFW convention: the centre face)."""
    if not boxes:
        return None
    cx, cy = width / 2.0, height / 2.0

    def cost(box: Box) -> float:
        bx, by = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        side = min(box[2] - box[0], box[3] - box[1])
        distance = float(np.hypot(bx - cx, by - cy)) / max(width, height)
        return distance - 0.5 * side / min(width, height)

    return min(boxes, key=cost)


async def locate_faces(
    identities: Sequence[Identity], analyzer: FaceAnalyzer, *, timeout_s: float = 30.0
) -> tuple[list[Identity], int]:
    """Replace assumed (centred) boxes by detected ones, one detector call per photo. Photos in
    which the detector finds no face keep the centred box (they stay in the stream: a face the
    detector misses is part of what the harness measures). Returns the identities and how many
    photos fell back to the centred box."""
    located: list[Identity] = []
    fallbacks = 0
    for identity in identities:
        photos = []
        for photo in identity.photos:
            if photo.located_by != "centre":
                photos.append(photo)
                continue
            found = await analyzer.detect(photo.image, timeout_s=timeout_s)
            w, h = photo.size
            box = _pick_face([d.box for d in found], w, h)
            if box is None:
                fallbacks += 1
                photos.append(photo)
            else:
                photos.append(photo.with_box(box, "detector"))
        located.append(Identity(identity.name, tuple(photos)))
    return located, fallbacks
