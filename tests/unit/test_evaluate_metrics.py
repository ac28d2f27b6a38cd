"""Open-set identification metrics on small cases computed by hand."""

from __future__ import annotations

import math

import pytest

from lfr_cli.evaluate.metrics import (
    Search,
    det_curve,
    fmr_exact_above,
    fpir_upper_bound,
    operating_point,
    projected_fpir,
    sweep,
    threshold_for_fpir,
)

# Four mated searches and three non-mated ones:
#   mated 0.90 correct | 0.75 correct | 0.85 WRONG identity | no candidate at all
#   non-mated 0.80 | 0.60 | 0.70


def mated(score: float | None, correct: bool, impostors: tuple[float, ...]) -> Search:
    return Search(True, score, correct, impostors, impostor_comparisons=2)


def stranger(score: float, impostors: tuple[float, ...]) -> Search:
    return Search(False, score, False, impostors, impostor_comparisons=3)


SEARCHES = [
    mated(0.90, True, (0.5,)),
    mated(0.75, True, (0.72, 0.4)),
    mated(0.85, False, (0.85,)),
    mated(None, False, ()),
    stranger(0.80, (0.80, 0.3, 0.2)),
    stranger(0.60, (0.60, 0.5, 0.1)),
    stranger(0.70, (0.70, 0.65, 0.0)),
]


def test_operating_point_at_080() -> None:
    p = operating_point(SEARCHES, 0.80)
    assert (p.mated, p.nonmated) == (4, 3)
    assert p.true_positives == 1  # 0.90 only; 0.75 is below, 0.85 is the wrong person
    assert p.misidentified == 1  # the 0.85 wrong-identity candidate alerts
    assert p.tpir == pytest.approx(0.25)
    assert p.fnir == pytest.approx(0.75)
    assert p.misidentification_rate == pytest.approx(0.25)
    assert p.false_positives == 1  # 0.80 >= 0.80: the comparison is inclusive
    assert p.fpir == pytest.approx(1 / 3)
    # impostor comparisons: 2*4 + 3*3 = 17; at >= 0.80: 0.85 and 0.80
    assert (p.impostor_matches, p.impostor_comparisons) == (2, 17)
    assert p.fmr == pytest.approx(2 / 17)


def test_operating_point_at_070_and_above_everything() -> None:
    p = operating_point(SEARCHES, 0.70)
    assert (p.true_positives, p.misidentified, p.false_positives) == (2, 1, 2)
    assert p.tpir == pytest.approx(0.5)
    assert p.fpir == pytest.approx(2 / 3)
    assert p.impostor_matches == 4  # 0.72, 0.85, 0.80, 0.70

    top = operating_point(SEARCHES, 0.95)
    assert (top.true_positives, top.misidentified, top.false_positives) == (0, 0, 0)
    assert top.fnir == 1.0
    assert top.fpir == 0.0


def test_rates_are_none_without_searches_of_a_kind() -> None:
    only_mated = [s for s in SEARCHES if s.mated]
    p = operating_point(only_mated, 0.8)
    assert p.fpir is None and p.fpir_upper95 is None
    assert p.tpir == pytest.approx(0.25)
    q = operating_point([s for s in SEARCHES if not s.mated], 0.8)
    assert q.tpir is None and q.fnir is None and q.misidentification_rate is None


def test_sweep_sorts_and_deduplicates_thresholds() -> None:
    points = sweep(SEARCHES, [0.8, 0.7, 0.8])
    assert [p.threshold for p in points] == [0.7, 0.8]


def test_threshold_for_a_resolvable_target() -> None:
    # 3 non-mated searches, target 0.34: one false positive allowed, so the threshold lies
    # just above the second-highest non-mated score (0.70).
    target = threshold_for_fpir(SEARCHES, 0.34)
    assert target.threshold == pytest.approx(0.701)
    assert target.point is not None
    assert target.point.false_positives == 1
    assert target.point.tpir == pytest.approx(0.5)  # 0.90 and 0.75
    assert target.resolvable
    assert not target.demonstrated  # 1 of 3 says little: the 95 % bound is far above 0.34


def test_threshold_for_an_unresolvable_target_says_so() -> None:
    target = threshold_for_fpir(SEARCHES, 0.001)
    assert target.threshold == pytest.approx(0.801)  # just above the highest non-mated score
    assert target.point is not None and target.point.false_positives == 0
    assert not target.resolvable and not target.demonstrated


def test_threshold_for_target_on_the_grid_edge() -> None:
    # A non-mated score exactly on the 0.001 grid must still be excluded (strictly above).
    searches = [
        Search(mated=False, top_score=0.7),
        Search(mated=True, top_score=0.9, top_correct=True),
    ]
    target = threshold_for_fpir(searches, 0.1)
    assert target.threshold == pytest.approx(0.701)
    assert target.point is not None and target.point.fpir == 0.0


def test_threshold_without_nonmated_searches() -> None:
    target = threshold_for_fpir([s for s in SEARCHES if s.mated], 0.01)
    assert target.threshold is None and target.point is None


def test_threshold_when_everything_is_allowed() -> None:
    target = threshold_for_fpir(SEARCHES, 0.999)
    assert target.threshold == pytest.approx(0.601)  # 2 of 3 allowed: above the third (0.60)
    only_none = [
        Search(mated=False, top_score=None),
        Search(mated=True, top_score=0.9, top_correct=True),
    ]
    assert threshold_for_fpir(only_none, 0.5).threshold == -1.0


def test_clopper_pearson_upper_bound() -> None:
    # Zero of n: the bound solves (1-p)^n = 0.05.
    assert fpir_upper_bound(0, 300) == pytest.approx(1 - 0.05 ** (1 / 300), rel=1e-9)
    assert fpir_upper_bound(0, 300) == pytest.approx(0.00994, abs=1e-5)
    # n of n (and no data at all) bound at 1.
    assert fpir_upper_bound(5, 5) == 1.0
    assert fpir_upper_bound(0, 0) == 1.0
    # More failures, higher bound; always above the point estimate.
    assert 3 / 300 < fpir_upper_bound(3, 300) < fpir_upper_bound(4, 300)


def test_det_curve_by_hand() -> None:
    points = det_curve(SEARCHES)
    by_threshold = {round(p.threshold, 3): (p.fpir, p.fnir) for p in points}
    # Thresholds are every distinct rank-1 score, highest first.
    assert [round(p.threshold, 2) for p in points] == [0.9, 0.85, 0.8, 0.75, 0.7, 0.6]
    assert by_threshold[0.9] == pytest.approx((0.0, 0.75))
    assert by_threshold[0.8] == pytest.approx((1 / 3, 0.75))
    assert by_threshold[0.75] == pytest.approx((1 / 3, 0.5))
    assert by_threshold[0.6] == pytest.approx((1.0, 0.5))
    assert det_curve([s for s in SEARCHES if s.mated]) == []


def test_fmr_truncation_and_projection() -> None:
    full = [Search(mated=False, top_score=0.8, impostor_scores=(0.8, 0.2), impostor_comparisons=2)]
    assert fmr_exact_above(full) is None
    cut = [
        Search(mated=False, top_score=0.8, impostor_scores=(0.8, 0.5), impostor_comparisons=10),
        Search(mated=False, top_score=0.7, impostor_scores=(0.7, 0.6), impostor_comparisons=10),
    ]
    assert fmr_exact_above(cut) == pytest.approx(0.6)
    assert projected_fpir(0.0, 1000) == 0.0
    assert projected_fpir(1e-4, 1000) == pytest.approx(1 - (1 - 1e-4) ** 1000)
    assert math.isclose(projected_fpir(1e-6, 10), 1e-5, rel_tol=1e-4)
