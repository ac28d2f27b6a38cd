"""Ground truth of a synthetic run — who was on screen when, and where — and how an alert is
matched to it.

An alert names a camera, a capture time, a face box and the watch-list subject it matched. It is
*true* when, in a frame of that camera around that capture time, the face under its box (IoU)
belongs to that subject; then it identifies that person's pass. Anything else is a false alert:
a stranger or another enrolled person matched, or a box where nobody was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from lfr_cli.synth.photos import Box
from lfr_cli.synth.scene import FaceTruth, Renderer, Scenario

__all__ = ["Association", "GroundTruth", "PassInfo", "iou"]

#: Least overlap between an alert's box and a true face box for the alert to be about that face.
MIN_IOU: Final = 0.3


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class PassInfo:
    pass_id: int
    camera_id: str
    identity: str
    start_frame: int
    end_frame: int  #: first frame after the pass
    visible_frames: int  #: frames in which the face is (almost) entirely in frame


@dataclass(frozen=True)
class Association:
    """What an alert was about, per the ground truth."""

    face: FaceTruth | None  #: the true face under the alert's box (None: nobody there)
    frame: int  #: the frame that face was found in
    overlap: float

    def is_true_for(self, identity: str) -> bool:
        return self.face is not None and self.face.identity == identity


@dataclass(frozen=True)
class GroundTruth:
    """Every frame's faces, per camera, and the passes."""

    fps: float
    width: int
    height: int
    frames: Mapping[str, Sequence[Sequence[FaceTruth]]]  #: camera → frame index → faces
    passes: Mapping[int, PassInfo]

    @classmethod
    def from_scenario(cls, scenario: Scenario, renderer: Renderer) -> GroundTruth:
        frames = {
            cam: [renderer.truth(cam, f) for f in range(scenario.frames_per_camera)]
            for cam in scenario.camera_ids
        }
        passes = {}
        for p in scenario.passes:
            per_frame = frames[p.camera_id][p.start_frame : p.end_frame]
            visible = sum(
                1
                for faces in per_frame
                for face in faces
                if face.pass_id == p.pass_id and face.visible
            )
            passes[p.pass_id] = PassInfo(
                p.pass_id, p.camera_id, p.identity, p.start_frame, p.end_frame, visible
            )
        cfg = scenario.config
        return cls(cfg.fps, cfg.width, cfg.height, frames, passes)

    @property
    def camera_ids(self) -> list[str]:
        return list(self.frames)

    def frame_count(self, camera_id: str) -> int:
        return len(self.frames[camera_id])

    def visible_faces(self, camera_id: str, frames: Sequence[int] | None = None) -> int:
        """How many (face, frame) pairs were fully on screen — in ``frames`` (default: all)."""
        per_frame = self.frames[camera_id]
        chosen = range(len(per_frame)) if frames is None else frames
        return sum(
            1 for f in chosen if 0 <= f < len(per_frame) for face in per_frame[f] if face.visible
        )

    def associate(
        self, camera_id: str, box: Box, identity: str | None, frame: int, window: int = 0
    ) -> Association:
        """The true face under ``box`` (IoU ≥ ``MIN_IOU``) in the frame nearest to ``frame``
        within ``± window`` that has one — preferring ``identity``'s face there — or nobody."""
        per_frame = self.frames.get(camera_id, ())
        found = [
            (f, face, overlap)
            for f in range(max(0, frame - window), min(len(per_frame), frame + window + 1))
            for face in per_frame[f]
            if (overlap := iou(box, face.box)) >= MIN_IOU
        ]
        if found:
            # Nearest frame first (a neighbouring pass may have walked the same path); there,
            # the named person's face before anyone else's, then the best overlap.
            f, face, overlap = min(
                found, key=lambda c: (abs(c[0] - frame), c[1].identity != identity, -c[2])
            )
            return Association(face, f, overlap)
        return Association(None, frame, 0.0)

    # -- files -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "passes": [vars(p) for p in self.passes.values()],
            "cameras": {
                cam: [[face.to_json() for face in faces] for faces in per_frame]
                for cam, per_frame in self.frames.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroundTruth:
        frames = {
            cam: [
                [
                    FaceTruth(
                        str(face["identity"]),
                        int(face["pass_id"]),
                        _box(face["box"]),
                        bool(face["visible"]),
                    )
                    for face in faces
                ]
                for faces in per_frame
            ]
            for cam, per_frame in data["cameras"].items()
        }
        passes = {int(p["pass_id"]): PassInfo(**p) for p in data["passes"]}
        return cls(float(data["fps"]), int(data["width"]), int(data["height"]), frames, passes)


def _box(values: Sequence[float]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)
