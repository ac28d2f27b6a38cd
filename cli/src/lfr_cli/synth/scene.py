"""Synthetic camera streams: people (face photos) walking across generated backgrounds.

A :class:`Scenario` is a plan — per camera, which person walks past when, along which path, at
which face size, blur and lighting — made deterministically from a seed by :func:`plan_scenario`
(or written by hand with :func:`walk_past`). :class:`Renderer` turns the plan into frames and
gives the ground truth of each frame (who is on screen, and where their face is) from the same
geometry, so truth and pixels cannot disagree. Pure numpy/OpenCV; nothing here talks to lfr.

Per pass, the face changes scale (walking towards the camera), position (with a walking bob),
focus (Gaussian blur) and lighting (gain); per frame, the camera adds exposure drift and sensor
noise. A frame depends only on (seed, camera, frame index), so any frame can be rendered alone
and every run of the same plan gives the same pixels.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from lfr.common.errors import ConfigError
from lfr.inference.types import UInt8Array
from lfr_cli.synth.photos import Box, FacePhoto, Identity

__all__ = [
    "FaceTruth",
    "Pass",
    "Renderer",
    "Scenario",
    "Sprite",
    "StreamConfig",
    "make_background",
    "make_sprite",
    "plan_scenario",
    "walk_past",
]

FloatArray = npt.NDArray[np.float32]

#: Crop side relative to the face box side: the whole head and some of its surroundings.
CROP_CONTEXT: Final = 2.2
#: A face counts as visible (the detector could see it) when this much of its box is in frame.
VISIBLE_FRACTION: Final = 0.9


@dataclass(frozen=True)
class StreamConfig:
    """How the streams look. Sizes in pixels, times in seconds; ranges are (low, high)."""

    width: int = 640
    height: int = 360
    fps: float = 4.0
    cameras: int = 1
    camera_prefix: str = "synth-cam-"
    face_px: tuple[float, float] = (72.0, 128.0)  #: face box side, far → near
    pass_s: tuple[float, float] = (3.0, 5.0)  #: time a person takes to cross the frame
    gap_s: tuple[float, float] = (0.5, 1.5)  #: empty time between two passes
    overlap: float = 0.2  #: chance that a pass starts while the previous one is on screen
    blur_sigma: tuple[float, float] = (0.0, 1.2)  #: out-of-focus blur of a face
    light_gain: tuple[float, float] = (0.7, 1.25)  #: lighting of a face (shade ↔ sun)
    noise_sigma: tuple[float, float] = (1.5, 5.0)  #: sensor noise per camera (uint8 scale)
    exposure_drift: float = 0.08  #: slow camera exposure swing, ± fraction
    passes_per_identity: int = 1  #: passes of each person, spread over the cameras
    min_repeat_gap_s: float = 0.0  #: same person on the same camera at least this far apart
    lead_in_s: float = 0.5  #: empty frames before the first pass
    tail_s: float = 1.0  #: empty frames after the last pass
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not (32 <= self.width <= 4096 and 32 <= self.height <= 4096):
            problems.append(f"frame size {self.width}x{self.height} (32..4096 per side)")
        if not 0.1 <= self.fps <= 120:
            problems.append(f"fps {self.fps} (0.1..120)")
        if not 1 <= self.cameras <= 64:
            problems.append(f"cameras {self.cameras} (1..64)")
        if self.passes_per_identity < 1:
            problems.append(f"passes per identity {self.passes_per_identity} (>= 1)")
        for name in ("face_px", "pass_s", "gap_s", "blur_sigma", "light_gain", "noise_sigma"):
            low, high = getattr(self, name)
            if low < 0 or high < low:
                problems.append(f"{name} {low}..{high}")
        if self.face_px[1] * CROP_CONTEXT > min(self.width, self.height) * 1.5:
            problems.append(f"face_px up to {self.face_px[1]} is too big for the frame")
        if self.face_px[0] < 8 or self.pass_s[0] <= 0:
            problems.append("faces under 8 px or passes of 0 s")
        if problems:
            raise ConfigError("bad stream settings: " + "; ".join(problems))

    def camera_ids(self) -> list[str]:
        return [f"{self.camera_prefix}{i + 1}" for i in range(self.cameras)]


@dataclass(frozen=True)
class Pass:
    """One person walking past one camera once. Positions are fractions of the frame size; the
    face box side goes from ``size0`` to ``size1`` pixels."""

    pass_id: int
    camera_id: str
    identity: str
    photo_index: int
    start_frame: int
    n_frames: int
    x0: float
    x1: float
    y: float
    size0: float
    size1: float
    blur0: float = 0.0
    blur1: float = 0.0
    gain0: float = 1.0
    gain1: float = 1.0
    bob: float = 0.01  #: vertical walking bob, fraction of the frame height

    @property
    def end_frame(self) -> int:
        """First frame after the pass."""
        return self.start_frame + self.n_frames

    def progress(self, frame: int) -> float | None:
        if not self.start_frame <= frame < self.end_frame:
            return None
        return (frame - self.start_frame) / max(1, self.n_frames - 1)


@dataclass(frozen=True)
class FaceTruth:
    """Ground truth of one face in one frame."""

    identity: str
    pass_id: int
    box: Box  #: face box in frame pixels, clipped to the frame
    visible: bool  #: enough of the face is in frame for a detector to see it

    def to_json(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "pass_id": self.pass_id,
            "box": [round(v, 1) for v in self.box],
            "visible": self.visible,
        }


@dataclass(frozen=True)
class Scenario:
    """The plan of every camera's stream."""

    config: StreamConfig
    passes: tuple[Pass, ...]
    frames_per_camera: int

    @property
    def camera_ids(self) -> list[str]:
        return self.config.camera_ids()

    @property
    def duration_s(self) -> float:
        return self.frames_per_camera / self.config.fps

    def passes_on(self, camera_id: str) -> list[Pass]:
        return [p for p in self.passes if p.camera_id == camera_id]

    def identities(self) -> list[str]:
        return sorted({p.identity for p in self.passes})

    def to_json(self) -> dict[str, object]:
        return {
            "config": dataclasses.asdict(self.config),
            "frames_per_camera": self.frames_per_camera,
            "passes": [dataclasses.asdict(p) for p in self.passes],
        }


@dataclass(frozen=True, eq=False)
class Sprite:
    """A generous crop around one face, with a soft head-shaped alpha mask."""

    identity: str
    rgb: FloatArray  #: SxSx3 float32, 0..255
    alpha: FloatArray  #: SxS float32, 0..1
    face_box: Box  #: in sprite pixels

    @property
    def face_side(self) -> float:
        x1, y1, x2, y2 = self.face_box
        return ((x2 - x1) + (y2 - y1)) / 2.0


def make_sprite(photo: FacePhoto, context: float = CROP_CONTEXT) -> Sprite:
    """Crop ``context`` x the face size around the face (a little more above it, for the hair);
    parts outside the photo are filled by edge replication and faded by the mask."""
    x1, y1, x2, y2 = photo.face_box
    side_face = ((x2 - x1) + (y2 - y1)) / 2.0
    side = max(8, round(context * side_face))
    cx = (x1 + x2) / 2.0
    cy = (y1 + y2) / 2.0 - 0.08 * side_face
    left, top = round(cx - side / 2.0), round(cy - side / 2.0)
    h, w = photo.image.shape[:2]
    pad = max(0, -left, -top, left + side - w, top + side - h)
    image: npt.NDArray[np.uint8] = photo.image
    if pad:
        image = np.asarray(
            cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE), dtype=np.uint8
        )
    crop = image[top + pad : top + pad + side, left + pad : left + pad + side]
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    # Head-shaped ellipse (taller than wide); fully opaque over the face box, soft at the rim.
    rx, ry = 0.42 * side, 0.5 * side
    r = np.sqrt(((xx + 0.5 - side / 2.0) / rx) ** 2 + ((yy + 0.5 - side / 2.0) / ry) ** 2)
    alpha = np.clip((1.0 - r) / 0.15, 0.0, 1.0).astype(np.float32)
    box = (x1 - left, y1 - top, x2 - left, y2 - top)
    return Sprite(photo.identity, crop.astype(np.float32), alpha, box)


def make_background(width: int, height: int, seed: int) -> FloatArray:
    """A plausible, face-free street/corridor scene: lit wall, floor, facades, doors, texture."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top = rng.uniform(90, 200, 3).astype(np.float32)
    bottom = rng.uniform(40, 140, 3).astype(np.float32)
    image = np.broadcast_to(top + (bottom - top) * ys, (height, width, 3)).copy()
    horizon = int(height * rng.uniform(0.62, 0.78))
    image[horizon:] = rng.uniform(50, 120, 3).astype(np.float32)
    for _ in range(int(rng.integers(5, 10))):  # facades, doors, windows
        w = int(rng.uniform(0.08, 0.3) * width)
        h = int(rng.uniform(0.2, 0.6) * height)
        x = int(rng.uniform(-0.1, 1.0) * width)
        y = max(0, horizon - h)
        colour = rng.uniform(40, 210, 3)
        cv2.rectangle(image, (x, y), (x + w, horizon), colour.tolist(), thickness=-1)
        for k in range(int(rng.integers(0, 4))):  # window rows
            wy = y + int((k + 0.5) * h / 4)
            shade = (colour * rng.uniform(0.5, 0.8)).tolist()
            cv2.rectangle(image, (x + w // 8, wy), (x + 7 * w // 8, wy + h // 10), shade, -1)
    for k in range(int(rng.integers(3, 7))):  # paving lines
        fy = horizon + int((height - horizon) * (k + 1) / 7)
        cv2.line(image, (0, fy), (width, fy), (rng.uniform(30, 90),) * 3, 1)
    # Low-frequency grey texture (grime, shadows), so the scene is not flat colour.
    small = rng.normal(0, 10, (max(2, height // 24), max(2, width // 24))).astype(np.float32)
    image += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]
    image = cv2.GaussianBlur(image, (0, 0), 1.0)
    return np.clip(image, 0, 255).astype(np.float32)


class Renderer:
    """Frames and ground truth of a :class:`Scenario`, from the identities' photos."""

    def __init__(self, scenario: Scenario, identities: Sequence[Identity]) -> None:
        self.scenario = scenario
        by_name = {i.name: i for i in identities}
        self._sprites: dict[tuple[str, int], Sprite] = {}
        for p in scenario.passes:
            key = (p.identity, p.photo_index)
            if key in self._sprites:
                continue
            identity = by_name.get(p.identity)
            if identity is None or not 0 <= p.photo_index < len(identity.photos):
                raise ConfigError(f"pass {p.pass_id}: no photo {p.photo_index} of {p.identity}")
            self._sprites[key] = make_sprite(identity.photos[p.photo_index])
        cfg = scenario.config
        self._camera_index = {cam: i for i, cam in enumerate(scenario.camera_ids)}
        self._backgrounds = {
            cam: make_background(cfg.width, cfg.height, _mix(cfg.seed, 7919, i))
            for cam, i in self._camera_index.items()
        }
        noise_rng = np.random.default_rng(_mix(cfg.seed, 104729))
        self._noise = {
            cam: float(noise_rng.uniform(*cfg.noise_sigma)) for cam in scenario.camera_ids
        }
        self._passes = {cam: scenario.passes_on(cam) for cam in scenario.camera_ids}

    # -- geometry (shared by truth and pixels) ----------------------------------------------

    def _placements(
        self, camera_id: str, frame: int
    ) -> Iterator[tuple[Pass, Sprite, float, float, float, float, float]]:
        """(pass, sprite, scale, left, top, blur, gain) of every person on screen."""
        cfg = self.scenario.config
        for p in self._passes.get(camera_id, ()):
            u = p.progress(frame)
            if u is None:
                continue
            sprite = self._sprites[(p.identity, p.photo_index)]
            size = p.size0 + (p.size1 - p.size0) * u
            scale = size / sprite.face_side
            steps = max(1.0, p.n_frames / cfg.fps * 1.8)  # ~1.8 steps per second
            cx = (p.x0 + (p.x1 - p.x0) * u) * cfg.width
            cy = (p.y + p.bob * math.sin(2 * math.pi * steps * u)) * cfg.height
            fx1, fy1, fx2, fy2 = sprite.face_box
            left = cx - (fx1 + fx2) / 2.0 * scale
            top = cy - (fy1 + fy2) / 2.0 * scale
            blur = p.blur0 + (p.blur1 - p.blur0) * u
            gain = p.gain0 + (p.gain1 - p.gain0) * u
            yield p, sprite, scale, left, top, blur, gain

    def truth(self, camera_id: str, frame: int) -> list[FaceTruth]:
        """Who is on screen in this frame, and where their face is."""
        cfg = self.scenario.config
        faces = []
        for p, sprite, scale, left, top, _blur, _gain in self._placements(camera_id, frame):
            x1, y1, x2, y2 = (
                left + sprite.face_box[0] * scale,
                top + sprite.face_box[1] * scale,
                left + sprite.face_box[2] * scale,
                top + sprite.face_box[3] * scale,
            )
            cx1, cy1 = max(0.0, x1), max(0.0, y1)
            cx2, cy2 = min(float(cfg.width), x2), min(float(cfg.height), y2)
            area = (x2 - x1) * (y2 - y1)
            inside = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1)
            if inside <= 0:
                continue
            faces.append(
                FaceTruth(
                    p.identity,
                    p.pass_id,
                    (cx1, cy1, cx2, cy2),
                    inside >= VISIBLE_FRACTION * area,
                )
            )
        return faces

    # -- pixels ------------------------------------------------------------------------------

    def render(self, camera_id: str, frame: int) -> UInt8Array:
        """Frame ``frame`` of camera ``camera_id``: HxWx3 uint8 RGB."""
        cfg = self.scenario.config
        cam = self._camera_index[camera_id]
        image = self._backgrounds[camera_id].copy()
        for _p, sprite, scale, left, top, blur, gain in self._placements(camera_id, frame):
            _paste(image, sprite, scale, left, top, blur, gain)
        # Camera exposure drifts slowly (clouds, auto-exposure); sensor noise every frame.
        t = frame / cfg.fps
        exposure = 1.0 + cfg.exposure_drift * math.sin(2 * math.pi * t / 11.0 + cam)
        rng = np.random.default_rng(_mix(cfg.seed, cam, frame))
        noise = rng.normal(0.0, self._noise[camera_id], image.shape[:2]).astype(np.float32)
        image = image * exposure + noise[:, :, None]
        return np.clip(image, 0, 255).astype(np.uint8)

    def frames(self, camera_id: str) -> Iterator[tuple[int, UInt8Array, list[FaceTruth]]]:
        for frame in range(self.scenario.frames_per_camera):
            yield frame, self.render(camera_id, frame), self.truth(camera_id, frame)


def _paste(
    image: FloatArray,
    sprite: Sprite,
    scale: float,
    left: float,
    top: float,
    blur: float,
    gain: float,
) -> None:
    side = sprite.rgb.shape[0]
    size = max(2, round(side * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    # OpenCV's stubs type results loosely; these stay float32 (the sprite's dtype).
    rgb: npt.NDArray[Any] = cv2.resize(sprite.rgb, (size, size), interpolation=interp)
    alpha: npt.NDArray[Any] = cv2.resize(sprite.alpha, (size, size), interpolation=cv2.INTER_LINEAR)
    if blur > 0.05:
        rgb = cv2.GaussianBlur(rgb, (0, 0), blur)
    rgb = rgb * np.float32(gain)
    x, y = round(left), round(top)
    h, w = image.shape[:2]
    sx1, sy1 = max(0, -x), max(0, -y)
    sx2, sy2 = min(size, w - x), min(size, h - y)
    if sx2 <= sx1 or sy2 <= sy1:
        return
    region = image[y + sy1 : y + sy2, x + sx1 : x + sx2]
    a = alpha[sy1:sy2, sx1:sx2, None]
    region[:] = region * (1.0 - a) + rgb[sy1:sy2, sx1:sx2] * a


def _mix(*values: int) -> int:
    """A stable seed from several integers (numpy's SeedSequence would also do; this is short)."""
    out = 0x9E3779B9
    for v in values:
        out = (out * 1_000_003 ^ (v & 0xFFFFFFFF)) & 0xFFFFFFFF
    return out


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1])) if bounds[1] > bounds[0] else bounds[0]


def _make_pass(
    rng: np.random.Generator,
    cfg: StreamConfig,
    *,
    pass_id: int,
    camera_id: str,
    identity: str,
    photo_index: int,
    start_frame: int,
    n_frames: int,
    lane: int,
    direction: int,
) -> Pass:
    far, near = cfg.face_px
    size0 = _uniform(rng, (far, (far + near) / 2))
    size1 = _uniform(rng, ((far + near) / 2, near))
    return Pass(
        pass_id=pass_id,
        camera_id=camera_id,
        identity=identity,
        photo_index=photo_index,
        start_frame=start_frame,
        n_frames=n_frames,
        x0=-0.12 if direction > 0 else 1.12,
        x1=1.12 if direction > 0 else -0.12,
        y=(0.42 if lane == 0 else 0.56) + float(rng.uniform(-0.03, 0.03)),
        size0=size0,
        size1=size1,
        blur0=_uniform(rng, cfg.blur_sigma),
        blur1=_uniform(rng, cfg.blur_sigma),
        gain0=_uniform(rng, cfg.light_gain),
        gain1=_uniform(rng, cfg.light_gain),
    )


def plan_scenario(
    identities: Sequence[Identity],
    config: StreamConfig,
    *,
    photo_choices: Mapping[str, Sequence[int]] | None = None,
) -> Scenario:
    """Every identity walks past ``passes_per_identity`` times, spread over the cameras in a
    seeded random order; the photo of each pass is drawn from ``photo_choices[identity]``
    (default: all of its photos — pass the held-out ones for enrolled people)."""
    if not identities:
        raise ConfigError("no identities to put in the streams")
    rng = np.random.default_rng(_mix(config.seed, 31337))
    cameras = config.camera_ids()
    walkers = [i.name for i in identities for _ in range(config.passes_per_identity)]
    order = [walkers[k] for k in rng.permutation(len(walkers))]
    per_camera: dict[str, list[str]] = {cam: [] for cam in cameras}
    for k, name in enumerate(order):
        per_camera[cameras[k % len(cameras)]].append(name)
    photos = {i.name: list(range(len(i.photos))) for i in identities}
    if photo_choices:
        for name, choice in photo_choices.items():
            if name in photos and choice:
                photos[name] = list(choice)
    fps = config.fps
    passes: list[Pass] = []
    last_frame = 0
    for cam in cameras:
        t = config.lead_in_s
        prev_start, prev_dur = -1e9, 0.0
        last_seen: dict[str, float] = {}
        lane = 0
        for name in per_camera[cam]:
            duration = _uniform(rng, config.pass_s)
            if passes and rng.random() < config.overlap and prev_start > -1e9:
                # Follow the previous walker at a distance: two people on screen at once.
                start = prev_start + max(0.45 * prev_dur, 1.0)
                lane = 1 - lane
            else:
                start = max(t, prev_start + prev_dur + _uniform(rng, config.gap_s))
                lane = 0
            if name in last_seen:
                start = max(start, last_seen[name] + config.min_repeat_gap_s)
            direction = 1 if rng.random() < 0.5 else -1
            if lane == 1 and passes and passes[-1].camera_id == cam:
                direction = 1 if passes[-1].x1 > passes[-1].x0 else -1
            choice = photos[name]
            start_frame = round(start * fps)
            n_frames = max(2, round(duration * fps))
            passes.append(
                _make_pass(
                    rng,
                    config,
                    pass_id=len(passes),
                    camera_id=cam,
                    identity=name,
                    photo_index=choice[int(rng.integers(0, len(choice)))],
                    start_frame=start_frame,
                    n_frames=n_frames,
                    lane=lane,
                    direction=direction,
                )
            )
            prev_start, prev_dur = start_frame / fps, n_frames / fps
            last_seen[name] = prev_start + prev_dur
            t = prev_start + prev_dur
            last_frame = max(last_frame, start_frame + n_frames)
    frames = last_frame + round(config.tail_s * fps)
    return Scenario(config, tuple(passes), frames)


def walk_past(
    order: Sequence[str],
    config: StreamConfig,
    *,
    pass_s: float = 4.0,
    gap_s: float = 1.0,
) -> Scenario:
    """A hand-made clip: the people in ``order`` walk past the first camera of ``config`` one
    after another, left to right and right to left in turn, each growing from far to near (for
    the demo and the end-to-end test; sizes, lighting and blur drawn with ``config``'s seed)."""
    if not order:
        raise ConfigError("nobody to walk past")
    single = dataclasses.replace(config, cameras=1)
    cam = single.camera_ids()[0]
    rng = np.random.default_rng(_mix(config.seed, 4242))
    fps = config.fps
    passes = []
    start = config.lead_in_s
    for k, name in enumerate(order):
        n_frames = max(2, round(pass_s * fps))
        start_frame = round(start * fps)
        passes.append(
            _make_pass(
                rng,
                config,
                pass_id=k,
                camera_id=cam,
                identity=name,
                photo_index=0,
                start_frame=start_frame,
                n_frames=n_frames,
                lane=0,
                direction=1 if k % 2 == 0 else -1,
            )
        )
        start = (start_frame + n_frames) / fps + gap_s
    frames = passes[-1].end_frame + round(config.tail_s * fps)
    return Scenario(single, tuple(passes), frames)
