"""Parity between the exported ONNX graph, served through OnnxEngine, and the original model in torch.

The torch side runs each text alone, unpadded: the plain Hugging Face result. The ONNX side goes through
the engine exactly as served (sorted, sub-batched, padded), so padding and pooling bugs show up here too.

Both are held to the float32 tolerance of the gate (trident.gate). `check_parity(..., strict=True)` raises
ParityError on a mismatch; with `strict=False` it only returns the report, and `assert_parity(report)` raises later.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from builder.export import ATTN_IMPLEMENTATIONS, ServingGraph, load_model, quiet
from trident.engines.onnxruntime import OnnxEngine
from trident.gate import TOLERANCES, GateReport, gate
from trident.spec import ModelSpec

# The longest parity text, in words (>= tokens): a few seconds of torch on CPU even for a 7B model.
LONG_TEXT_WORDS = 1024

Text = str | tuple[str, str]

_LONG_SENTENCE = (
    "Transformers process text as sequences of subword tokens, and every model has a maximum sequence "
    "length beyond which the input must be truncated before inference."
)
_TEXTS = [
    "Hello!",
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Hyperparameterization and electroencephalography are unbelievably antidisestablishmentarian words.",
    "Zürich, São Paulo, Kraków: naïve café déjà vu, Straße, façade.",
    "東京は日本の首都です。Москва — столица России. مرحبا بالعالم. नमस्ते दुनिया",
    "I love this 😀🚀🔥 so much!!! 👍🏽 ❤️",
    "  leading and trailing spaces,\ttabs\tand\nnewlines  ",
    "Numbers 3.14159, 2024-01-01, $1,000,000 and e-mail someone@example.com or https://example.org/a?b=c",
    "Angela Merkel met Emmanuel Macron in Berlin to discuss the European Union and Siemens AG.",
]
_PAIRS = [
    ("what is the capital of france?", "Paris is the capital and largest city of France."),
    ("how do I bake bread", "Mix flour, water, salt and yeast; knead, proof and bake at 230°C."),
    ("what is the capital of france?", "The mitochondria is the powerhouse of the cell."),
    ("emoji 😀", "A smiling face 😀 is a common emoji."),
    ("Zürich", "Zürich ist die größte Stadt der Schweiz."),
]


class ParityError(Exception):
    """The ONNX graph does not reproduce the torch model within tolerance."""


def default_texts(spec: ModelSpec) -> list[Text]:
    """Short, long (past max_length, up to LONG_TEXT_WORDS), non-ASCII, emoji, multi-piece; pairs for pair tasks."""
    # Every word is at least one token, so up to LONG_TEXT_WORDS this overflows max_length and exercises
    # truncation; a long-context model (8k ModernBERT, 32k Qwen) gets a long text, not a 32k-token one in torch.
    words = min(spec.max_length, LONG_TEXT_WORDS)
    repeats = words // len(_LONG_SENTENCE.split()) + 2
    texts: list[Text] = [*_TEXTS, " ".join([_LONG_SENTENCE] * repeats)]
    if spec.task_row.pairs:
        texts += [*_PAIRS, ("short query", texts[-1])]
    return texts


def tokenize(
    tokenizer: PreTrainedTokenizerBase, spec: ModelSpec, texts: list[Text]
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Unpadded int64 ids (and token types when the graph takes them), truncated at spec.max_length."""
    ids: list[np.ndarray] = []
    types: list[np.ndarray] = []
    for text in texts:
        first, second = (text, None) if isinstance(text, str) else text
        enc = tokenizer(
            first,
            second,
            truncation=True,
            max_length=spec.max_length,
            return_token_type_ids=spec.uses_token_type_ids,
        )
        ids.append(np.asarray(enc["input_ids"], dtype=np.int64))
        if spec.uses_token_type_ids:
            types.append(np.asarray(enc["token_type_ids"], dtype=np.int64))
    return ids, (types if spec.uses_token_type_ids else None)


def torch_reference(
    model_dir: Path,
    spec: ModelSpec,
    ids: list[np.ndarray],
    types: list[np.ndarray] | None,
    trust_remote_code: bool = False,
) -> list[np.ndarray]:
    """Each input alone through the HF model (+ the same pooling as the graph), shaped like engine output."""
    graph = ServingGraph(_load_reference_model(model_dir, spec, trust_remote_code), spec, model_dir).eval()
    outputs = []
    with torch.inference_mode():
        for i, row in enumerate(ids):
            input_ids = torch.from_numpy(row).unsqueeze(0)
            feeds = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
            if types is not None:
                feeds["token_type_ids"] = torch.from_numpy(types[i]).unsqueeze(0)
            if spec.padding_side == "left":
                feeds["position_ids"] = torch.arange(len(row)).unsqueeze(0)
            outputs.append(graph(**feeds)[0][0].numpy())  # the main output, of the one input
    return outputs


def _load_reference_model(model_dir: Path, spec: ModelSpec, trust_remote_code: bool) -> PreTrainedModel:
    errors = []
    with quiet():
        for attn in ATTN_IMPLEMENTATIONS:
            try:
                return load_model(model_dir, spec, attn, trust_remote_code)
            except (ValueError, ImportError) as exc:  # no such attention implementation for this model
                errors.append(f"{attn}: {exc}")
    raise ParityError(f"cannot load {model_dir} in torch: {'; '.join(errors)}")


def compare(spec: ModelSpec, expected: list[np.ndarray], actual: list[np.ndarray]) -> GateReport:
    """The engine's outputs against the reference's, judged by the float32 tolerance."""
    try:
        return gate(expected, actual, "float32", logits=spec.task_row.logits)
    except ValueError as exc:  # an output of another shape
        raise ParityError(str(exc)) from None


def assert_parity(report: GateReport) -> None:
    if report.passed:
        return
    raise ParityError(
        f"ONNX output differs from torch over {report.num_texts} texts: max abs diff {report.max_abs_diff:.3e}, "
        f"min cosine {report.min_cosine:.7f} (needs {TOLERANCES['float32'].describe()})"
    )


def summary(report: GateReport, tolerance: str = "float32") -> dict[str, float | int | str]:
    """The manifest's `parity`: the figures and the tolerance they were held to."""
    return {"max_abs_diff": report.max_abs_diff, "min_cosine": report.min_cosine, "texts": report.num_texts,
            "tolerance": TOLERANCES[tolerance].describe()}


def check_parity(
    model_dir: Path,
    spec: ModelSpec,
    onnx_path: Path,
    texts: list[Text] | None = None,
    *,
    strict: bool = True,
    trust_remote_code: bool = False,
) -> GateReport:
    """Compare onnx_path (through OnnxEngine) with the torch model on texts (default: a built-in set)."""
    # The served tokenizer is tokenizer.json alone, so its code is never needed (nor trusted).
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    inputs = texts if texts is not None else default_texts(spec)
    ids, types = tokenize(tokenizer, spec, inputs)
    actual = OnnxEngine(onnx_path, spec, pad_id=spec.pad_token_id).run(ids, types)  # padded as served
    report = compare(spec, torch_reference(model_dir, spec, ids, types, trust_remote_code), actual)
    if strict:
        assert_parity(report)
    return report
