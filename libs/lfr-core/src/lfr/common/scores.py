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
    """Inverse of :func:`score_from_euclidean`, for unit vectors (dlib's raw descriptors are
    not unit: see :data:`DEFAULT_THRESHOLD`)."""
    return math.sqrt(max(0.0, 2.0 - 2.0 * score))


# Calibrated with `lfr evaluate` on lfw-dev (40 enrolled identities, 215 mated and 300 non-mated
# searches through Triton, the watchlist service and Redis KNN); table, plot, rule and the limits of
# that data: docs/ACCURACY.md. dlib's raw descriptors have norm ~1.4, so its usual raw distance 0.6
# is a score of ~0.91 here, not 0.82.

#: Threshold a deployment gets when it asks for none (0). Rule: the lowest threshold with FPIR
#: <= 1 % on lfw-dev (0.938), rounded up to the 0.005 grid plus one step of margin. There:
#: TPIR 69.8 %, FPIR 0.33 % (1/300), no mis-identification, 1:1 FMR 4.9e-5.
DEFAULT_THRESHOLD = 0.945
#: No deployment may match below this score. Rule: the lowest threshold with FPIR <= 5 % on
#: lfw-dev (0.929), rounded up to the grid; below it FPIR about doubles every 0.01 (0.93: 4.0 %,
#: 0.92: 9.7 %, 0.91: 20 %, 0.90: 46 %) and the 1:1 FMR passes 1e-3.
THRESHOLD_FLOOR = 0.93
