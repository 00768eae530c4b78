"""The accuracy gate: how far an engine's outputs may be from a reference's before the engine may be served,
and one report of how far they are. Every check that lets an engine through uses it: the exported graph against
torch (builder/export.py) and against transformers (builder/parity.py), the torch engine in half precision and
FP8 (builder/torch_build.py, builder/quantization.py), the int8 MatMul search (builder/int8.py), and the CPU
precision variants at build time and again on another kind of CPU (builder/variants.py, trident/precision.py).

Vector outputs (embeddings, token vectors) are judged by the cosine of each row; logits by their raw difference
and by the scores served from them (sigmoid of one logit, softmax of several), and NER by its labels too.

Angles alone do not judge retrieval: every cosine to float32 can be >= 0.99 while the texts' neighbours move
(near-duplicates, a common direction that dominates). So one vector per text (embeddings) is also judged by
the nearest-neighbour ranking over the texts, where there are RECALL_MIN_TEXTS or more (recall@10: of each
text's RECALL_K nearest neighbours among the others, the share that are its nearest under float32 too, averaged
over the texts), and one score per text (rerankers) by the order of each pair list (Kendall's tau-b per list of
pairs sharing a query, the smallest).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from trident.postprocess import sigmoid, softmax

RECALL_K = 10  # neighbours per text of the retrieval figure
RECALL_MIN_TEXTS = 5 * RECALL_K  # fewer (the parity texts): the neighbours are most of the others, no figure


@dataclass(frozen=True)
class Tolerance:
    """What may differ from the reference; the defaults hold nothing."""

    min_cosine: float = -math.inf  # vector outputs: every row's cosine to the reference's
    max_abs_diff: float = math.inf  # every output, raw
    max_logit_diff: float = math.inf  # logits, raw
    max_score_diff: float = math.inf  # logits as the scores served; with it, no NER label may change
    min_recall: float = -math.inf  # one vector per text: mean recall@RECALL_K of the neighbours over the texts
    min_kendall_tau: float = -math.inf  # one score per text: Kendall's tau-b of every pair list's order

    def describe(self) -> str:
        limits = [(self.min_cosine > -math.inf, f"cosine >= {self.min_cosine:g}"),
                  (self.max_abs_diff < math.inf, f"|diff| <= {self.max_abs_diff:g}"),
                  (self.max_logit_diff < math.inf, f"logit diff <= {self.max_logit_diff:g}"),
                  (self.max_score_diff < math.inf, f"score diff <= {self.max_score_diff:g}"),
                  (self.min_recall > -math.inf, f"recall@{RECALL_K} >= {self.min_recall:g}"),
                  (self.min_kendall_tau > -math.inf, f"Kendall tau >= {self.min_kendall_tau:g}")]
        return " / ".join(text for held, text in limits if held)


TOLERANCES: dict[str, Tolerance] = {
    # Another float32 engine of the same model (the ONNX graph vs transformers, OpenVINO vs ONNX Runtime).
    "float32": Tolerance(min_cosine=0.99999, max_abs_diff=1e-4),
    # The torch engine in fp16 / bf16 on a GPU against transformers in float32.
    "half": Tolerance(min_cosine=0.999, max_logit_diff=0.05),
    # The CPU's reduced precisions (bf16, int8 variants, and each int8 MatMul combination tried) vs float32.
    # Beside the angles and scores, retrieval must survive: the neighbours over the gate's texts, a reranker's order.
    "reduced": Tolerance(min_cosine=0.99, max_score_diff=0.01, min_recall=0.95, min_kendall_tau=0.95),
    # FP8 linear layers against the same engine unquantized (bf16 on the GPU).
    "fp8": Tolerance(min_cosine=0.99),
}


@dataclass
class GateReport:
    passed: bool
    num_texts: int
    min_cosine: float = float("nan")  # over the rows of vector outputs (NaN: no row wider than one number)
    mean_cosine: float = float("nan")
    max_abs_diff: float = float("nan")
    max_score_diff: float = float("nan")  # logits only
    labels_changed: int = 0  # NER tokens whose label moved, on the texts whose labels are checked
    recall_at_10: float = float("nan")  # one vector per text, >= RECALL_MIN_TEXTS texts: mean neighbour recall@RECALL_K
    worst_recall_at_10: float = float("nan")  # the text whose neighbours moved most
    min_kendall_tau: float = float("nan")  # one score per text, over the pair lists given: the worst list's order
    pair_lists: int = 0  # how many pair lists were judged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateReport:
        """A report saved in a manifest (with whatever else was saved beside it)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def describe(self) -> str:
        parts = []
        if not np.isnan(self.min_cosine):
            parts.append(f"min cosine {self.min_cosine:.5f}")
        if not np.isnan(self.recall_at_10):
            parts.append(f"recall@{RECALL_K} {self.recall_at_10:.4f} (worst text {self.worst_recall_at_10:.1f})")
        if not np.isnan(self.max_score_diff):
            parts.append(f"max |score diff| {self.max_score_diff:.4f}")
        if self.pair_lists:
            parts.append(f"min Kendall tau {self.min_kendall_tau:.4f} over {self.pair_lists} pair lists")
        if self.labels_changed:
            parts.append(f"{self.labels_changed} NER labels changed")
        return ", ".join(parts) + f" over {self.num_texts} texts"


def cosines(expected: list[np.ndarray], actual: list[np.ndarray]) -> np.ndarray:
    """The cosine of each row (a per-token output: each token's row), in float64; NaN stays NaN."""
    want = np.concatenate([e.reshape(-1, e.shape[-1]) for e in expected]).astype(np.float64)
    got = np.concatenate([a.reshape(-1, a.shape[-1]) for a in actual]).astype(np.float64)
    norms = np.maximum(np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1), 1e-30)
    return (want * got).sum(axis=1) / norms


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float64)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-30)


def neighbour_recall(expected: np.ndarray, actual: np.ndarray, k: int = RECALL_K) -> np.ndarray:
    """Per text (a row of `expected` / `actual`, more than k of them): the share of its k nearest neighbours among
    the other texts by `actual`'s cosines that are among its k nearest by `expected`'s. A neighbour tied with the
    reference's k-th nearest counts (duplicate texts have no one order). A non-finite `actual`: 0 for every text."""
    count = len(expected)
    if count <= k:
        raise ValueError(f"recall@{k} needs more than {k} texts, got {count}")
    if not np.isfinite(actual).all():
        return np.zeros(count)
    want, got = _unit(expected), _unit(actual)
    reference, similarities = want @ want.T, got @ got.T
    np.fill_diagonal(reference, -np.inf)
    np.fill_diagonal(similarities, -np.inf)
    kth = np.partition(reference, count - k, axis=1)[:, count - k]  # each text's k-th nearest, by float32
    nearest = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    return (np.take_along_axis(reference, nearest, axis=1) >= kth[:, None] - 1e-9).mean(axis=1)


def kendall_tau(expected: np.ndarray, actual: np.ndarray) -> float:
    """Kendall's tau-b between two scorings of one list: 1 same order, -1 reversed; NaN if `expected` ranks
    nothing (every score tied); NaN anywhere in `actual` gives NaN."""
    first, second = np.triu_indices(len(expected), 1)
    want = np.sign(expected[first] - expected[second])
    got = np.sign(actual[first] - actual[second])
    pairs = len(first)
    if not np.any(want):
        return float("nan")
    denominator = math.sqrt((pairs - np.sum(want == 0)) * (pairs - np.sum(got == 0)))
    if denominator == 0:  # float32 orders the list, `actual` ties it all
        return 0.0
    return float(np.sum(want * got) / denominator)


def scores(logits: np.ndarray) -> np.ndarray:
    """What the postprocess serves from logits: sigmoid of one, softmax of several."""
    logits = logits.astype(np.float64)
    with np.errstate(invalid="ignore"):  # a NaN stays NaN (and fails), without a warning
        return sigmoid(logits) if logits.shape[-1] == 1 else softmax(logits)


def compare(expected: list[np.ndarray], actual: list[np.ndarray], *, logits: bool, label_texts: int = 0,
            pair_lists: list[tuple[int, int]] | None = None) -> GateReport:
    """How far `actual` (one output per text) is from `expected`. `label_texts`: the first texts, whose NER labels
    are checked. `pair_lists`: [start, stop) ranges of texts that are one query's pairs, whose order (one score
    per text) is judged. A shape that differs raises ValueError naming the text."""
    for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want.shape != got.shape:
            raise ValueError(f"text {i}: output shape {got.shape} != the reference's {want.shape}")
    report = GateReport(passed=False, num_texts=len(expected))
    # np.max (not max()) so that a NaN propagates, and NaN fails every limit.
    report.max_abs_diff = float(np.max([np.max(np.abs(e - a)) for e, a in zip(expected, actual, strict=True)]))
    if expected and expected[0].shape[-1] > 1:
        row_cosines = cosines(expected, actual)
        report.min_cosine, report.mean_cosine = float(np.min(row_cosines)), float(np.mean(row_cosines))
        if not logits and expected[0].ndim == 1 and len(expected) >= RECALL_MIN_TEXTS:  # one vector per text
            recall = neighbour_recall(np.stack(expected), np.stack(actual))
            report.recall_at_10, report.worst_recall_at_10 = float(np.mean(recall)), float(np.min(recall))
    if pair_lists and expected and expected[0].size == 1:
        want = np.array([float(e.reshape(-1)[0]) for e in expected])
        got = np.array([float(a.reshape(-1)[0]) for a in actual])
        ordered = [(start, stop) for start, stop in pair_lists if np.ptp(want[start:stop]) > 0]  # all tied: no order
        taus = [kendall_tau(want[start:stop], got[start:stop]) for start, stop in ordered]
        if taus:
            report.min_kendall_tau, report.pair_lists = float(np.min(taus)), len(taus)
    if logits:
        report.max_score_diff = float(np.max([np.max(np.abs(scores(e) - scores(a)))
                                              for e, a in zip(expected, actual, strict=True)]))
        report.labels_changed = int(sum(np.sum(np.argmax(e, -1) != np.argmax(a, -1))
                                        for e, a in zip(expected[:label_texts], actual[:label_texts], strict=True)
                                        if e.ndim > 1))  # per-token logits: NER
    return report


def passes(report: GateReport, tolerance: Tolerance, *, logits: bool) -> bool:
    """Whether the report is within the tolerance (NaN anywhere it is judged fails)."""
    within = [report.max_abs_diff <= tolerance.max_abs_diff]
    if logits:
        within += [report.max_abs_diff <= tolerance.max_logit_diff, report.max_score_diff <= tolerance.max_score_diff,
                   tolerance.max_score_diff == math.inf or report.labels_changed == 0]
        if report.pair_lists:
            within.append(report.min_kendall_tau >= tolerance.min_kendall_tau)
    else:
        within.append(report.min_cosine >= tolerance.min_cosine)
        if not np.isnan(report.recall_at_10):  # judged where computed: one vector per text, enough texts
            within.append(report.recall_at_10 >= tolerance.min_recall)
    return all(within)


def gate(expected: list[np.ndarray], actual: list[np.ndarray], tolerance: str, *, logits: bool,
         label_texts: int = 0, pair_lists: list[tuple[int, int]] | None = None) -> GateReport:
    """`compare`, judged by the tolerance of that name (looked up when called)."""
    report = compare(expected, actual, logits=logits, label_texts=label_texts, pair_lists=pair_lists)
    report.passed = passes(report, TOLERANCES[tolerance], logits=logits)
    return report
