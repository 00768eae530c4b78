"""bench/precision.py's targets: which contenders count, on real weights and on the random BERT-base-sized
model (figures made up here; no timing)."""

from __future__ import annotations

import pytest

from bench.precision import passing, targets

CEILINGS = {"fp32": 1e11, "bf16": 4e11, "int8": 8e11}


def real_weights() -> dict[str, dict]:
    return {
        "sentence-transformers fp32": {"tokens_per_s": 100.0, "min_cosine": 1.0, "recall_at_10": 1.0},
        "sentence-transformers openvino": {"tokens_per_s": 200.0, "min_cosine": 0.9999, "recall_at_10": 0.994},
        # keeps every angle but scrambles the neighbours: fails
        "sentence-transformers openvino int8 (static)": {"tokens_per_s": 400.0, "min_cosine": 0.995,
                                                         "recall_at_10": 0.90},
        "sentence-transformers onnx int8 (avx512_vnni)": {"tokens_per_s": 300.0, "min_cosine": 0.96,
                                                          "recall_at_10": 0.99},
        "trident openvino-int8": {"tokens_per_s": 260.0, "min_cosine": 0.995, "recall_at_10": 0.96,
                                  "engine": {"tokens_per_s": 320.0, "flops": 4e11}},
        "trident openvino-bf16": {"tokens_per_s": 180.0, "min_cosine": 0.9999, "recall_at_10": 0.994,
                                  "engine": {"tokens_per_s": 200.0, "flops": 2e11}},
        "trident onnxruntime-fp32": {"error": "did not start"},
        "infinity-emb torch": {"tokens_per_s": 90.0},
    }


def test_only_contenders_within_the_gate_count() -> None:
    contenders = real_weights()
    accepted = passing(contenders)
    assert "sentence-transformers openvino int8 (static)" not in accepted  # recall@10 0.90
    assert "sentence-transformers onnx int8 (avx512_vnni)" not in accepted  # min cosine 0.96
    assert "trident onnxruntime-fp32" not in accepted  # did not run
    result = targets(contenders, CEILINGS, accepted)
    assert result["trident"] == "trident openvino-int8"
    assert result["sentence_transformers"] == "sentence-transformers openvino"
    assert result["vs_sentence_transformers"] == pytest.approx(1.3)
    assert result["vs_infinity"] == pytest.approx(260 / 90)
    assert result["ceiling_precision"] == "int8" and result["engine_vs_ceiling"] == pytest.approx(0.5)
    assert result["http_vs_engine"] == pytest.approx(260 / 320)


def test_random_weights_count_the_configurations_that_passed_on_real_weights() -> None:
    """The BERT-base-sized model's vectors are not compared: a configuration counts there if it passed on the
    default model, so a fast int8 export that failed there is not the baseline here."""
    speed_only = {label: {key: value for key, value in row.items() if key not in ("min_cosine", "recall_at_10")}
                  for label, row in real_weights().items()}
    assert passing(speed_only) >= {"sentence-transformers openvino int8 (static)"}  # alone it would count
    result = targets(speed_only, CEILINGS, passing(real_weights()))
    assert result["sentence_transformers"] == "sentence-transformers openvino"
    assert result["vs_sentence_transformers"] == pytest.approx(1.3)
