"""The accuracy gate (trident.gate) on every kind of output: vectors by cosine and by the nearest-neighbour ranking
over the texts, logits by raw and served scores and by each pair list's order, NER labels, NaN and shapes, and each
row of the tolerance table as the checks that use it read it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trident.gate import (
    RECALL_K,
    RECALL_MIN_TEXTS,
    TOLERANCES,
    GateReport,
    Tolerance,
    compare,
    gate,
    kendall_tau,
    neighbour_recall,
    passes,
)


def vectors(seed: int = 0, n: int = 5, dim: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=dim).astype(np.float32) for _ in range(n)]


def test_vectors_are_judged_row_by_row_by_cosine():
    expected = vectors()
    rng = np.random.default_rng(1)
    close = [e + 0.01 * rng.normal(size=8).astype(np.float32) for e in expected]
    report = gate(expected, close, "reduced", logits=False)
    assert report.passed and TOLERANCES["reduced"].min_cosine <= report.min_cosine < 1
    assert report.min_cosine <= report.mean_cosine
    assert not gate(expected, close, "float32", logits=False).passed  # float32 is held to 1e-4 as well
    assert gate(expected, expected, "float32", logits=False).passed
    far = [*close[:-1], -expected[-1]]  # one text off is enough to fail
    assert not gate(expected, far, "reduced", logits=False).passed


def test_nan_anywhere_fails_every_tolerance():
    expected = vectors()
    nan = [*expected[:-1], np.full(8, np.nan, dtype=np.float32)]
    for name in TOLERANCES:
        assert not gate(expected, nan, name, logits=False).passed, name
    logits = [np.array([0.3], dtype=np.float32)]
    for name in ("float32", "half", "reduced"):
        assert not gate(logits, [np.array([np.nan], dtype=np.float32)], name, logits=True).passed, name


def test_logits_are_judged_by_the_scores_served_and_ner_by_its_labels():
    logits = [np.array([0.3], dtype=np.float32), np.array([-2.0], dtype=np.float32)]
    assert gate(logits, [x + 0.02 for x in logits], "reduced", logits=True).passed  # sigmoid moves < 0.005
    report = gate(logits, [x + 0.2 for x in logits], "reduced", logits=True)
    assert not report.passed and report.max_score_diff > TOLERANCES["reduced"].max_score_diff
    assert math.isnan(report.min_cosine)  # one number per text: no cosine
    tokens = [np.array([[2.0, 0.0], [0.05, 0.0]], dtype=np.float32)]
    flipped = [np.array([[2.0, 0.0], [0.0, 0.05]], dtype=np.float32)]  # scores move 0.025, one label flips
    assert gate(tokens, flipped, "reduced", logits=True, label_texts=0).max_score_diff < 0.03
    report = gate(tokens, flipped, "reduced", logits=True, label_texts=1)
    assert report.labels_changed == 1 and not report.passed


def test_half_precision_holds_logits_to_their_raw_difference():
    logits = [np.array([1.0, -1.0], dtype=np.float32)]
    assert gate(logits, [logits[0] + 0.04], "half", logits=True).passed
    assert not gate(logits, [logits[0] + 0.06], "half", logits=True).passed
    expected = vectors()
    assert not gate(expected, [e * 1.5 for e in expected], "float32", logits=False).passed  # scale: |diff|
    assert gate(expected, [e * 1.5 for e in expected], "half", logits=False).passed  # cosine only


def test_a_shape_that_differs_is_named():
    with pytest.raises(ValueError, match="text 0: output shape"):
        compare([np.zeros(2, dtype=np.float32)], [np.zeros(3, dtype=np.float32)], logits=False)


def test_tolerances_describe_what_they_hold():
    assert TOLERANCES["reduced"].describe() == ("cosine >= 0.99 / score diff <= 0.01 / recall@10 >= 0.95 / "
                                                "Kendall tau >= 0.95")
    assert TOLERANCES["float32"].describe() == "cosine >= 0.99999 / |diff| <= 0.0001"
    assert passes(GateReport(passed=False, num_texts=1, min_cosine=0.5, max_abs_diff=9.0), Tolerance(), logits=False)


def test_a_report_round_trips_through_a_manifest_dict():
    report = gate(vectors(), vectors(), "reduced", logits=False)
    assert GateReport.from_dict({**report.to_dict(), "int8_groups": ["384x384 (24)"]}) == report


def near_duplicates(seed: int, n: int = 60, dim: int = 64, spread: float = 0.06) -> list[np.ndarray]:
    """n vectors around one direction: every pair's cosine is > 0.99, the neighbours decided by the small rest."""
    rng = np.random.default_rng(seed)
    common = np.zeros(dim)
    common[0] = 1.0
    return [(common + spread * rng.normal(size=dim) / np.sqrt(dim)).astype(np.float32) for _ in range(n)]


def test_a_variant_that_keeps_every_cosine_but_scrambles_the_neighbours_fails():
    expected = near_duplicates(0)
    scrambled = near_duplicates(1)  # the same common direction, other small parts: other neighbours
    report = gate(expected, scrambled, "reduced", logits=False)
    assert report.min_cosine >= TOLERANCES["reduced"].min_cosine  # the angles alone would let it through
    assert report.recall_at_10 < 0.5 and not report.passed
    assert "recall@10" in report.describe()
    rng = np.random.default_rng(2)
    close = [e + 0.0001 * rng.normal(size=e.shape).astype(np.float32) for e in expected]
    report = gate(expected, close, "reduced", logits=False)
    assert report.passed and report.recall_at_10 >= TOLERANCES["reduced"].min_recall
    assert gate(expected, scrambled, "fp8", logits=False).passed  # a tolerance without a recall limit ignores it


def test_neighbour_recall_per_text():
    expected = np.stack(vectors(n=30, dim=16))
    assert np.all(neighbour_recall(expected, expected) == 1.0)
    assert np.all(neighbour_recall(expected, 3.0 * expected) == 1.0)  # cosines: scale does not move neighbours
    twins = np.concatenate([expected, expected[:20]])  # a text's twins tie: whichever comes first counts
    jitter = np.random.default_rng(3).normal(size=twins.shape) * 1e-6
    assert np.all(neighbour_recall(twins, twins + jitter) == 1.0)
    recall = neighbour_recall(expected, np.stack(vectors(seed=9, n=30, dim=16)))
    assert recall.shape == (30,) and recall.mean() < 0.7
    nan = expected.copy()
    nan[3, 0] = np.nan
    assert np.all(neighbour_recall(expected, nan) == 0.0)
    assert not gate(list(expected), list(nan), "reduced", logits=False).passed
    with pytest.raises(ValueError, match=f"more than {RECALL_K} texts"):
        neighbour_recall(expected[:RECALL_K], expected[:RECALL_K])
    few = vectors(n=RECALL_MIN_TEXTS - 1)  # too few texts for a ranking figure: judged by angles alone
    assert np.isnan(gate(few, few, "reduced", logits=False).recall_at_10)


def test_kendall_tau():
    order = np.arange(10.0)
    assert kendall_tau(order, order * 2 + 1) == 1.0 and kendall_tau(order, -order) == -1.0
    swapped = order.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert kendall_tau(order, swapped) == pytest.approx(1 - 2 / 45)
    assert np.isnan(kendall_tau(np.ones(5), order[:5]))  # float32 ranks nothing
    assert kendall_tau(order, np.zeros(10)) == 0.0
    assert np.isnan(kendall_tau(order, np.full(10, np.nan)))


def test_a_reranker_that_keeps_its_scores_within_001_but_reverses_a_pair_list_fails():
    rng = np.random.default_rng(0)
    logits = [np.array([x], dtype=np.float32) for x in rng.uniform(-4, 4, size=30)]
    lists = [(0, 10), (10, 20), (20, 30)]
    assert gate(logits, logits, "reduced", logits=True, pair_lists=lists).min_kendall_tau == 1.0
    # The third list's scores packed within 0.004 of each other, then reversed: |score diff| stays < 0.01.
    packed = [*logits[:20], *[np.array([0.001 * i], dtype=np.float32) for i in range(10)]]
    reversed_ = [*packed[:20], *packed[20:][::-1]]
    report = gate(packed, reversed_, "reduced", logits=True, pair_lists=lists)
    assert report.max_score_diff < TOLERANCES["reduced"].max_score_diff
    assert report.min_kendall_tau == -1.0 and report.pair_lists == 3 and not report.passed
    assert "Kendall tau -1.0000 over 3 pair lists" in report.describe()
    assert gate(packed, reversed_, "reduced", logits=True).passed  # without pair lists, no order is judged
    tied = [*logits[:20], *[np.array([0.5], dtype=np.float32)] * 10]  # a list float32 ties: nothing to keep
    assert gate(tied, tied, "reduced", logits=True, pair_lists=lists).pair_lists == 2


def test_old_reports_without_the_ranking_figures_still_load():
    report = GateReport.from_dict({"passed": True, "num_texts": 3, "min_cosine": 0.995})
    assert np.isnan(report.recall_at_10) and report.pair_lists == 0 and report.describe().startswith("min cosine")
