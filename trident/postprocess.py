"""Turning engine outputs into answers: normalization and Matryoshka truncation of embeddings, and the
one softmax / sigmoid that scores (trident.task_stages) and NER (trident.ner) use."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit-length rows, as sentence-transformers' Normalize (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def shape_embeddings(vectors: np.ndarray, normalize: bool, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` components (Matryoshka), then normalize if asked.

    Truncating first and normalizing after is what makes a shortened vector usable for cosine.
    """
    if dimensions:
        vectors = vectors[..., :dimensions]
    if normalize:
        vectors = l2_normalize(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the maximum so large logits cannot overflow; keeps the dtype
    (transformers' pipelines compute it exactly so, which NER's parity relies on)."""
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow for large |x|."""
    return np.exp(-np.logaddexp(0.0, -logits))
