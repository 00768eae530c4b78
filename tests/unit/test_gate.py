"""The accuracy gate (trident.gate) on every kind of output: vectors by cosine, logits by raw and served scores,
NER labels, NaN and shapes, and each row of the tolerance table as the checks that use it read it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trident.gate import TOLERANCES, GateReport, Tolerance, compare, gate, passes


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
    assert TOLERANCES["reduced"].describe() == "cosine >= 0.99 / score diff <= 0.01"
    assert TOLERANCES["float32"].describe() == "cosine >= 0.99999 / |diff| <= 0.0001"
    assert passes(GateReport(passed=False, num_texts=1, min_cosine=0.5, max_abs_diff=9.0), Tolerance(), logits=False)


def test_a_report_round_trips_through_a_manifest_dict():
    report = gate(vectors(), vectors(), "reduced", logits=False)
    assert GateReport.from_dict({**report.to_dict(), "int8_groups": ["384x384 (24)"]}) == report
