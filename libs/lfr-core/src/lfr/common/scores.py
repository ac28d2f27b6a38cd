"""The one similarity scale used everywhere (API, config, alerts, docs).

A *match score* is the cosine similarity of two L2-normalised face embeddings, in [-1, 1];
higher means more alike, and a probe matches when ``score >= threshold``. Every conversion from
the raw distances the model or the index produce goes through this module.
"""

from __future__ import annotations

import math


def score_from_cosine_distance(cosine_distance: float) -> float:
    """RediSearch's COSINE metric returns ``1 - cos``; the score is ``cos``."""
    return 1.0 - cosine_distance


def score_from_euclidean(distance: float) -> float:
    """For unit vectors ``|a-b|^2 = 2 - 2cos``, so ``cos = 1 - d^2/2``."""
    return 1.0 - (distance * distance) / 2.0


def euclidean_from_score(score: float) -> float:
    """Inverse of :func:`score_from_euclidean` (dlib's usual 0.6 distance is score 0.82)."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * score))
