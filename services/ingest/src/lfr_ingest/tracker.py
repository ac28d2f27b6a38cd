"""Follows faces across the frames of one camera so that each person is sent to match once per
track (its best shot), and again only after ``reprobe_interval_s``.

Association is greedy over (track, face) pairs, best first: enough box overlap continues a track
unless the embeddings clearly disagree (below half of ``min_similarity``: two people crossing); a
larger move (low frame rates, fast walkers) continues it only when the centroid moved at most
``max_displacement`` face widths AND the embeddings agree (``min_similarity``). Times are
capture times (seconds), so a replayed stream tracks the same way at any speed.

Memory only: a track holds its latest box, its latest embedding (only when ``min_similarity`` > 0,
for association) and at most one candidate shot. The shot goes as soon as match has decided on
it, the rest when the track ends (``ttl_s`` after the person was last seen).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lfr.inference.types import Box, DetectedFace, FaceQuality
from lfr_ingest.quality import shot_score
from lfr_ingest.settings import IngestSettings

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    iou: float = 0.3
    max_displacement: float = 1.5
    min_similarity: float = 0.8
    ttl_s: float = 1.0
    best_shot_window_s: float = 0.4
    reprobe_interval_s: float = 10.0
    max_tracks: int = 64

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> TrackerConfig:
        return cls(
            iou=settings.track_iou,
            max_displacement=settings.track_max_displacement,
            min_similarity=settings.track_min_similarity,
            ttl_s=settings.track_ttl_s,
            best_shot_window_s=settings.best_shot_window_s,
            reprobe_interval_s=settings.reprobe_interval_s,
            max_tracks=settings.max_tracks_per_camera,
        )


@dataclass(slots=True, eq=False)
class Shot:
    """A candidate probe of a track. Memory only; dropped once match has decided on it."""

    embedding: Vector
    chip: npt.NDArray[np.uint8]
    box: Box
    quality: FaceQuality
    capture_s: float
    score: float

    def __repr__(self) -> str:
        return "Shot(<face data not shown>)"


@dataclass(slots=True, eq=False)
class Track:
    track_id: int
    box: Box
    #: Latest embedding, for association; None when the tracker goes by position only.
    embedding: Vector | None = field(repr=False)
    first_seen_s: float
    last_seen_s: float
    frames: int = 1
    #: Capture time of the first shot that passed the quality gate.
    first_qualified_s: float | None = None
    #: Best qualifying shot since the last probe.
    best: Shot | None = field(default=None, repr=False)
    probes: int = 0
    last_probe_s: float | None = None
    matched: bool = False


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def displacement(a: Box, b: Box) -> float:
    """Centroid move from ``a`` to ``b``, in widths of the larger side of ``a``."""
    dx = (b[0] + b[2] - a[0] - a[2]) / 2
    dy = (b[1] + b[3] - a[1] - a[3]) / 2
    scale = max(a[2] - a[0], a[3] - a[1], 1.0)
    return math.hypot(dx, dy) / scale


class Tracker:
    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._use_embeddings = config.min_similarity > 0
        self.tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)
        #: Tracks started since creation (a statistic).
        self.started = 0

    def expire(self, now_s: float) -> list[Track]:
        """End and return the tracks not seen for longer than the TTL."""
        lost = [t for t in self.tracks.values() if now_s - t.last_seen_s > self.config.ttl_s]
        for track in lost:
            del self.tracks[track.track_id]
        return lost

    def close_all(self) -> list[Track]:
        lost = list(self.tracks.values())
        self.tracks.clear()
        return lost

    def update(
        self, faces: Sequence[DetectedFace], qualified: Sequence[bool], now_s: float
    ) -> tuple[list[Track], list[Track]]:
        """Assign each face to a track (new faces start one). Returns the track of each face, in
        order, and the tracks pushed out to respect ``max_tracks``."""
        assigned: dict[int, Track] = {}
        used: set[int] = set()
        for _key, t_id, f_idx in sorted(self._candidates(faces), reverse=True):
            if t_id in used or f_idx in assigned:
                continue
            used.add(t_id)
            assigned[f_idx] = self.tracks[t_id]
        evicted: list[Track] = []
        result: list[Track] = []
        for idx, face in enumerate(faces):
            track = assigned.get(idx)
            if track is None:
                if len(self.tracks) >= self.config.max_tracks:
                    oldest = min(self.tracks.values(), key=lambda t: t.last_seen_s)
                    del self.tracks[oldest.track_id]
                    evicted.append(oldest)
                track = Track(
                    track_id=next(self._ids),
                    box=face.box,
                    embedding=face.embedding if self._use_embeddings else None,
                    first_seen_s=now_s,
                    last_seen_s=now_s,
                )
                self.tracks[track.track_id] = track
                self.started += 1
            else:
                track.box = face.box
                track.embedding = face.embedding if self._use_embeddings else None
                track.last_seen_s = now_s
                track.frames += 1
            if qualified[idx] and not track.matched:
                self._offer(track, face, now_s)
            result.append(track)
        return result, evicted

    def _candidates(self, faces: Sequence[DetectedFace]) -> list[tuple[float, int, int]]:
        cfg = self.config
        pairs: list[tuple[float, int, int]] = []
        for track in self.tracks.values():
            for f_idx, face in enumerate(faces):
                overlap = iou(track.box, face.box)
                sim = (
                    float(np.dot(track.embedding, face.embedding))
                    if track.embedding is not None
                    else 0.0
                )
                near = displacement(track.box, face.box) <= cfg.max_displacement
                if overlap >= cfg.iou and (
                    not self._use_embeddings or sim >= cfg.min_similarity / 2
                ):
                    pairs.append((overlap + sim, track.track_id, f_idx))
                elif near and (not self._use_embeddings or sim >= cfg.min_similarity):
                    pairs.append((sim, track.track_id, f_idx))
        return pairs

    def _offer(self, track: Track, face: DetectedFace, now_s: float) -> None:
        if track.first_qualified_s is None:
            track.first_qualified_s = now_s
        if track.probes > 0 and self.config.reprobe_interval_s <= 0:
            return  # probed, and never again: keep no shot
        score = shot_score(face.quality)
        if track.best is None or score > track.best.score:
            track.best = Shot(face.embedding, face.chip, face.box, face.quality, now_s, score)

    def due(self, now_s: float) -> list[Track]:
        """Tracks whose best shot should go to match now."""
        cfg = self.config
        due: list[Track] = []
        for track in self.tracks.values():
            if track.best is None or track.matched:
                continue
            if track.probes == 0:
                assert track.first_qualified_s is not None
                if now_s - track.first_qualified_s >= cfg.best_shot_window_s:
                    due.append(track)
            elif (
                cfg.reprobe_interval_s > 0
                and track.last_probe_s is not None
                and now_s - track.last_probe_s >= cfg.reprobe_interval_s
            ):
                due.append(track)
        return due

    @staticmethod
    def take_shot(track: Track) -> Shot | None:
        shot, track.best = track.best, None
        return shot

    @staticmethod
    def probed(track: Track, now_s: float, *, matched: bool) -> None:
        """Match decided on the track's shot."""
        track.probes += 1
        track.last_probe_s = now_s
        track.matched = track.matched or matched

    @staticmethod
    def retry_later(track: Track, shot: Shot) -> None:
        """Match could not decide: keep the shot for the next frame unless a better one came."""
        if track.best is None or shot.score >= track.best.score:
            track.best = shot
