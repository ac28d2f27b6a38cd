"""Open-set identification metrics (ISO/IEC 19795-1 / NIST FRVT 1:N terms), pure functions.

A *search* is one probe face compared against the whole watch list; its outcome is the best
candidate (rank 1) and that candidate's score on the lfr scale (:mod:`lfr.common.scores`). At a
threshold ``t``:

* **TPIR** — mated searches whose rank-1 candidate is the probe's own identity with
  score >= t, over all mated searches; **FNIR** = 1 - TPIR.
* **mis-identification rate** — mated searches whose rank-1 candidate is *another* identity
  with score >= t (an alert on the wrong person; also counted in FNIR).
* **FPIR** — non-mated searches with any candidate >= t (i.e. rank-1 score >= t), over all
  non-mated searches.
* **FMR** — single comparisons of a probe with a watch-list entry of another identity that
  score >= t, over all such comparisons (the 1:1 rate; it lets FPIR be projected to a larger
  watch list: ``FPIR(N) ≈ 1 - (1 - FMR)^N`` if comparisons were independent).

Probes without a usable face are not searches: they are reported beside these rates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta  # type: ignore[import-untyped]

__all__ = [
    "DetPoint",
    "OperatingPoint",
    "Search",
    "TargetThreshold",
    "det_curve",
    "fpir_upper_bound",
    "operating_point",
    "projected_fpir",
    "sweep",
    "threshold_for_fpir",
]

#: Reported thresholds are on a 0.001 grid (scores come from float32 vectors).
THRESHOLD_STEP = 0.001


@dataclass(frozen=True, slots=True)
class Search:
    """The outcome of one probe searched against the watch list."""

    mated: bool
    #: Rank-1 score; None when the watch list returned no candidate at all.
    top_score: float | None
    #: Rank-1 candidate is the probe's own identity (always False for non-mated probes).
    top_correct: bool = False
    #: Scores of the returned candidates that are NOT the probe's identity.
    impostor_scores: tuple[float, ...] = ()
    #: How many entries of other identities the watch list held for this search; more than
    #: ``len(impostor_scores)`` when the KNN answer was cut at top-k.
    impostor_comparisons: int = 0


def fpir_upper_bound(false_positives: int, searches: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper confidence bound of a rate seen as k of n (0 of 300
    gives 0.0099: "no false alert in 300" only shows FPIR < 1 % with 95 % confidence)."""
    if searches <= 0:
        return 1.0
    if false_positives >= searches:
        return 1.0
    return float(beta.ppf(confidence, false_positives + 1, searches - false_positives))


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    threshold: float
    mated: int
    nonmated: int
    true_positives: int
    misidentified: int
    false_positives: int
    impostor_matches: int
    impostor_comparisons: int

    @property
    def tpir(self) -> float | None:
        return self.true_positives / self.mated if self.mated else None

    @property
    def fnir(self) -> float | None:
        tpir = self.tpir
        return None if tpir is None else 1.0 - tpir

    @property
    def misidentification_rate(self) -> float | None:
        return self.misidentified / self.mated if self.mated else None

    @property
    def fpir(self) -> float | None:
        return self.false_positives / self.nonmated if self.nonmated else None

    @property
    def fpir_upper95(self) -> float | None:
        if not self.nonmated:
            return None
        return fpir_upper_bound(self.false_positives, self.nonmated)

    @property
    def fmr(self) -> float | None:
        if not self.impostor_comparisons:
            return None
        return self.impostor_matches / self.impostor_comparisons

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "threshold": self.threshold,
            "tpir": self.tpir,
            "fnir": self.fnir,
            "misidentification_rate": self.misidentification_rate,
            "fpir": self.fpir,
            "fpir_upper95": self.fpir_upper95,
            "fmr": self.fmr,
            "mated_searches": self.mated,
            "nonmated_searches": self.nonmated,
            "true_positives": self.true_positives,
            "misidentified": self.misidentified,
            "false_positives": self.false_positives,
            "impostor_matches": self.impostor_matches,
            "impostor_comparisons": self.impostor_comparisons,
        }


def _hit(score: float | None, threshold: float) -> bool:
    return score is not None and score >= threshold


def operating_point(searches: Iterable[Search], threshold: float) -> OperatingPoint:
    mated = nonmated = tp = misid = fp = imp_hits = imp_total = 0
    for s in searches:
        if s.mated:
            mated += 1
            if _hit(s.top_score, threshold):
                if s.top_correct:
                    tp += 1
                else:
                    misid += 1
        else:
            nonmated += 1
            if _hit(s.top_score, threshold):
                fp += 1
        imp_hits += sum(1 for score in s.impostor_scores if score >= threshold)
        imp_total += s.impostor_comparisons
    return OperatingPoint(threshold, mated, nonmated, tp, misid, fp, imp_hits, imp_total)


def sweep(searches: Sequence[Search], thresholds: Iterable[float]) -> list[OperatingPoint]:
    return [operating_point(searches, t) for t in sorted(set(thresholds))]


def fmr_exact_above(searches: Iterable[Search]) -> float | None:
    """FMR counts are exact only above the lowest score a cut-off (top-k) answer returned:
    below it, unreturned comparisons might have scored higher. None: no answer was cut."""
    cut = [
        min(s.impostor_scores)
        for s in searches
        if s.impostor_scores and s.impostor_comparisons > len(s.impostor_scores)
    ]
    return max(cut) if cut else None


def projected_fpir(fmr: float, watchlist_size: int) -> float:
    """FPIR of a watch list of ``watchlist_size`` entries if each comparison false-matched
    independently with probability ``fmr`` (a rough guide, not a measurement)."""
    return 1.0 - (1.0 - fmr) ** watchlist_size


def _just_above(score: float) -> float:
    """The smallest grid threshold strictly above ``score``."""
    steps = math.floor(score / THRESHOLD_STEP + 1e-9) + 1
    return round(steps * THRESHOLD_STEP, 3)


@dataclass(frozen=True, slots=True)
class TargetThreshold:
    """The lowest grid threshold whose measured FPIR is at most ``target_fpir``."""

    target_fpir: float
    threshold: float | None  #: None when there were no non-mated searches
    point: OperatingPoint | None
    #: The data can show this target at all: at least one false positive is allowed among
    #: the non-mated searches. When False, the threshold is merely above every non-mated
    #: score, and FPIR <= target is NOT demonstrated.
    resolvable: bool
    #: With 95 % confidence FPIR is below the upper bound; True when that bound meets target.
    demonstrated: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "target_fpir": self.target_fpir,
            "threshold": self.threshold,
            "resolvable": self.resolvable,
            "demonstrated_at_95pct": self.demonstrated,
            "operating_point": self.point.as_dict() if self.point else None,
        }


def threshold_for_fpir(searches: Sequence[Search], target_fpir: float) -> TargetThreshold:
    if not 0.0 <= target_fpir < 1.0:
        raise ValueError("target FPIR must be in [0, 1)")
    scores = sorted(
        (s.top_score for s in searches if not s.mated and s.top_score is not None),
        reverse=True,
    )
    nonmated = sum(1 for s in searches if not s.mated)
    if nonmated == 0:
        return TargetThreshold(target_fpir, None, None, resolvable=False, demonstrated=False)
    allowed = math.floor(target_fpir * nonmated + 1e-9)
    # When even alerting on every candidate stays within the target, the lowest score there is.
    threshold = -1.0 if allowed >= len(scores) else _just_above(scores[allowed])
    point = operating_point(searches, threshold)
    upper = point.fpir_upper95
    return TargetThreshold(
        target_fpir,
        threshold,
        point,
        resolvable=allowed >= 1,
        demonstrated=upper is not None and upper <= target_fpir,
    )


@dataclass(frozen=True, slots=True)
class DetPoint:
    threshold: float
    fpir: float
    fnir: float


def det_curve(searches: Sequence[Search]) -> list[DetPoint]:
    """FNIR against FPIR at every threshold where either changes (each distinct rank-1 score),
    highest threshold first."""
    mated = [s for s in searches if s.mated]
    nonmated = [s for s in searches if not s.mated]
    if not mated or not nonmated:
        return []
    hits = np.sort([s.top_score for s in mated if s.top_correct and s.top_score is not None])
    false = np.sort([s.top_score for s in nonmated if s.top_score is not None])
    all_scores = [s.top_score for s in searches if s.top_score is not None]
    thresholds = np.unique(np.asarray(all_scores, dtype=np.float64))[::-1]
    tp = len(hits) - np.searchsorted(hits, thresholds, side="left")
    fp = len(false) - np.searchsorted(false, thresholds, side="left")
    return [
        DetPoint(float(t), float(f) / len(nonmated), 1.0 - float(p) / len(mated))
        for t, p, f in zip(thresholds, tp, fp, strict=True)
    ]
