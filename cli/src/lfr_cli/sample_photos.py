"""Real face photos shipped inside registry packages (no network, no files in this repo).

* ``grace_hopper`` — matplotlib's ``mpl-data/sample_data/grace_hopper.jpg`` (one frontal face)
* ``astronaut``    — scikit-image's ``skimage/data/astronaut.png`` (Eileen Collins, one face)
* ``cameraman``    — scikit-image's ``skimage/data/camera.png`` (grayscale; dlib HOG misses the
  face, the CNN detector finds it)

Tests, the demo and the harness all take their photos from here. Located without importing the
packages (importing matplotlib/skimage is slow).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from lfr.common.errors import ConfigError

__all__ = [
    "ASTRONAUT",
    "CAMERAMAN",
    "GRACE_HOPPER",
    "PHOTOS",
    "SamplePhoto",
    "photo_bytes",
    "photo_path",
]


@dataclass(frozen=True, slots=True)
class SamplePhoto:
    name: str
    package: str  # import name of the package shipping it
    relative_path: str  # inside that package
    description: str

    @property
    def path(self) -> Path:
        return photo_path(self)

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


GRACE_HOPPER = SamplePhoto(
    "grace_hopper",
    "matplotlib",
    "mpl-data/sample_data/grace_hopper.jpg",
    "Grace Hopper, JPEG 512x600, one frontal face",
)
ASTRONAUT = SamplePhoto(
    "astronaut", "skimage", "data/astronaut.png", "Eileen Collins, PNG 512x512, one face"
)
CAMERAMAN = SamplePhoto(
    "cameraman",
    "skimage",
    "data/camera.png",
    "the cameraman, grayscale PNG 512x512; found by the CNN detector, missed by HOG",
)

PHOTOS: dict[str, SamplePhoto] = {p.name: p for p in (GRACE_HOPPER, ASTRONAUT, CAMERAMAN)}


def photo_path(photo: SamplePhoto | str) -> Path:
    """Where the photo lies in the installed package; :class:`ConfigError` if it is missing."""
    if isinstance(photo, str):
        try:
            photo = PHOTOS[photo]
        except KeyError:
            raise ConfigError(f"unknown sample photo {photo!r}; known: {sorted(PHOTOS)}") from None
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = {"skimage": "scikit-image"}.get(photo.package, photo.package)
        raise ConfigError(
            f"sample photo {photo.name} needs the {pip_name} package; pip install {pip_name}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / photo.relative_path
    if not path.is_file():
        raise ConfigError(
            f"sample photo {photo.name} not found at {path}; reinstall {photo.package}"
        )
    return path


def photo_bytes(photo: SamplePhoto | str) -> bytes:
    """The encoded (JPEG/PNG) bytes of a sample photo."""
    return photo_path(photo).read_bytes()
