"""Every architecture family BEI and BEI-Bert list, as tiny random models through one real stack.

Each family gets a checkpoint from testkit/factories.py (hidden 32, 2 layers, its real tokenizer layout and
padding side), built through `trident serve`'s own path (prepare_model: export, parity, repository) and
served, all of them, by ONE tritonserver + gateway. The served answers are compared with the references:

- embeddings, /v1/embeddings: sentence-transformers `encode`, per input cosine >= 0.9999, max abs <= 1e-4;
- reranker and classifier logits, /rerank and /predict with raw_scores: transformers
  `*ForSequenceClassification` on each input alone, max abs <= 1e-4;
- NER logits, /predict_tokens with raw_scores and no aggregation: transformers `*ForTokenClassification`
  on each text alone, same tokens, max abs <= 1e-4.

Every batch mixes short inputs with inputs past the model's maximum (truncated), and every input sent
alone must get what it got inside the mixed batch, within 1e-5: padding changes nothing.
The largest difference of each comparison is printed at the end of the module (run with -s).
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from builder.build import BuildOptions, build
from builder.errors import BuildError
from testkit.factories import QWEN3_QUERY_PROMPT, make_tiny_bert, make_tiny_model
from testkit.stack import Stack, embed, post_json

TOLERANCE = 1e-4  # against the reference
MIN_COSINE = 0.9999
PADDING_TOLERANCE = 1e-5  # alone vs inside a mixed batch
BIGGEST: dict[str, float] = {}


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    head: str = "base"
    num_labels: int | None = None
    max_seq_length: int = 64
    max_num_tokens: int = 16384

    @property
    def max_length(self) -> int:
        return min(self.max_seq_length, self.max_num_tokens)


EMBEDDERS = [
    Case("bert-embed", "bert"),
    Case("roberta-embed", "roberta"),
    Case("xlm-roberta-embed", "xlm-roberta"),
    Case("distilbert-embed", "distilbert"),
    Case("mpnet-embed", "mpnet"),
    Case("modernbert-embed", "modernbert", max_seq_length=1024),  # past 512 positions, across local windows
    Case("qwen2-embed", "qwen2"),
    # Engine batches of at most 128 tokens: a mixed batch runs as several, each padded to its own longest.
    Case("qwen3-embed", "qwen3", max_num_tokens=128),
    # max_num_tokens below the model's maximum caps the input length, as in BEI.
    Case("llama-embed", "llama", max_num_tokens=48),
    Case("mistral-embed", "mistral"),
    Case("gemma2-embed", "gemma2"),
    Case("gemma3-embed", "gemma3_text"),
]
SCORERS = [
    Case("roberta-classifier", "roberta", "seq-cls", 3),
    Case("distilbert-classifier", "distilbert", "seq-cls", 2),
    Case("mpnet-reranker", "mpnet", "seq-cls", 1),
    Case("modernbert-reranker", "modernbert", "seq-cls", 1),
    Case("qwen3-reranker", "qwen3", "seq-cls", 1),  # the Qwen3-Reranker-seq-cls kind: left padding
    Case("qwen2-reranker", "qwen2", "seq-cls", 1),  # right padding
]
TAGGERS = [Case(f"{family}-ner", family, "token-cls") for family in ("roberta", "distilbert", "mpnet", "modernbert")]
CUSTOM = "custom-bert-embed"  # trust_remote_code: code shipped in the checkpoint folder

TEXTS = [
    "hi",
    "The quick brown fox jumps over the lazy dog.",
    "Zürich, São Paulo, Kraków: naïve café déjà vu.",
    "東京は日本の首都です。Москва — столица России.",
    "I love this 😀🚀 so much!!!",
    "people often find the water by the house very cold in the long winter nights " * 3,
    "a",
    "the world is a small place and every day we make new words " * 40,  # past every maximum: truncated
]
QUERY = "what is the capital of france?"
LONG_MODERNBERT_TEXT = "the quick brown fox jumps over the lazy dog near london and paris " * 120  # ~1.5k tokens


def note_gap(name: str, gap: float) -> None:
    BIGGEST[name] = max(BIGGEST.get(name, 0.0), gap)


# --- checkpoints, builds, the stack ---


CUSTOM_MODELING = '''"""A checkpoint's own model code: BERT whose hidden states go through tanh and a scale."""
import os
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

if os.environ.get("CUSTOM_CODE_MARKER"):  # proves whether this file was ever imported
    Path(os.environ["CUSTOM_CODE_MARKER"]).write_text("imported")


class CustomBertConfig(BertConfig):
    model_type = "custom-bert"


class CustomBertModel(BertModel):
    config_class = CustomBertConfig

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        output.last_hidden_state = 3.0 * torch.tanh(output.last_hidden_state)
        return output
'''


def make_custom_model(out_dir: Path) -> Path:
    """A tiny BERT whose config points (auto_map) at modeling code inside its own folder."""
    make_tiny_bert(out_dir, pooling="mean", normalize=True, seed=11)
    (out_dir / "modeling_custom.py").write_text(CUSTOM_MODELING)
    config = json.loads((out_dir / "config.json").read_text())
    config.update(model_type="custom-bert", architectures=["CustomBertModel"],
                  auto_map={"AutoConfig": "modeling_custom.CustomBertConfig",
                            "AutoModel": "modeling_custom.CustomBertModel"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def _prepare(name: str, path: str, options: dict[str, object]) -> Path:
    """One build in a worker process: one torch thread each, two builds at a time on two cores."""
    torch.set_num_threads(1)
    from cli.serve import ModelArg, prepare_model

    return prepare_model(ModelArg(path, name), options, progress=lambda _: None)


def _options(case: Case | None = None, trust_remote_code: bool = False) -> dict[str, object]:
    return {"task": None, "pooling": None, "max_length": None,
            "max_num_tokens": case.max_num_tokens if case else 16384, "trust_remote_code": trust_remote_code}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("architectures")
    made = {case.name: make_tiny_model(root / case.name, case.family, head=case.head, num_labels=case.num_labels,
                                       max_seq_length=case.max_seq_length, seed=i)
            for i, case in enumerate(EMBEDDERS + SCORERS + TAGGERS)}
    made[CUSTOM] = make_custom_model(root / CUSTOM)
    return made


@pytest.fixture(scope="module")
def repositories(checkpoints: dict[str, Path]) -> dict[str, Path]:
    """Every build, two at a time (cached by content hash: a rerun builds nothing)."""
    cases = {case.name: case for case in EMBEDDERS + SCORERS + TAGGERS}
    jobs = {name: (name, str(path), _options(cases.get(name), trust_remote_code=name == CUSTOM))
            for name, path in checkpoints.items()}
    with pytest.MonkeyPatch.context() as patch, ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        # The trusted model's code is copied to HF_MODULES_CACHE: a temporary one, not ~/.cache.
        patch.setenv("HF_MODULES_CACHE", str(checkpoints[CUSTOM].parent / "hf-modules"))
        futures = {name: pool.submit(_prepare, *job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def arch_stack(repositories: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    args = [arg for repository in repositories.values() for arg in ("--repository", str(repository))]
    server = Stack(args, tmp_path_factory.mktemp("arch-stack") / "serve.log").start()
    yield server
    server.stop()
    if BIGGEST:
        print("\nlargest differences:\n" + "\n".join(f"  {k}: {v:.2e}" for k, v in sorted(BIGGEST.items())))


def assert_close_to_reference(name: str, served: np.ndarray, reference: np.ndarray) -> None:
    assert served.shape == reference.shape
    gap = float(np.abs(served - reference).max())
    note_gap(f"{name} vs reference (max abs)", gap)
    assert gap <= TOLERANCE, f"{name}: max abs diff {gap:.2e} > {TOLERANCE}"


def assert_padding_free(name: str, batched: list[np.ndarray], alone: list[np.ndarray]) -> None:
    gap = max(float(np.abs(b - a).max()) for b, a in zip(batched, alone, strict=True))
    note_gap(f"{name} alone vs mixed batch", gap)
    assert gap <= PADDING_TOLERANCE, f"{name}: an input alone differs from itself in a mixed batch by {gap:.2e}"


# --- embeddings ---


@pytest.mark.parametrize("case", EMBEDDERS, ids=lambda case: case.name)
def test_embeddings_match_sentence_transformers(arch_stack, checkpoints, case):
    texts = [*TEXTS, LONG_MODERNBERT_TEXT] if case.family == "modernbert" else TEXTS
    reference_model = SentenceTransformer(str(checkpoints[case.name]), device="cpu")
    reference_model.max_seq_length = case.max_length
    tokenizer = reference_model.tokenizer
    lengths = [len(tokenizer(t, truncation=False)["input_ids"]) for t in texts]
    assert min(lengths) <= 4 and max(lengths) > case.max_length, "the batch must mix short and truncated inputs"

    served = embed(arch_stack, case.name, texts)
    reference = reference_model.encode(texts, convert_to_numpy=True, batch_size=4)
    cosine = (served * reference).sum(1) / np.linalg.norm(served, axis=1) / np.linalg.norm(reference, axis=1)
    note_gap(f"{case.name} 1 - cosine", float(1 - cosine.min()))
    assert cosine.min() >= MIN_COSINE
    assert_close_to_reference(case.name, served, reference)

    alone = [embed(arch_stack, case.name, [text])[0] for text in texts]
    assert_padding_free(case.name, list(served), alone)


def test_qwen3_query_prompt_and_eos(arch_stack, checkpoints):
    """prompt_name="query" is Qwen3-Embedding's instruction; the tokenizer appends <|endoftext|> like theirs."""
    reference_model = SentenceTransformer(str(checkpoints["qwen3-embed"]), device="cpu")
    texts = ["what is the capital of france?", "how do I bake bread"]
    served = embed(arch_stack, "qwen3-embed", texts, prompt_name="query")
    reference = reference_model.encode(texts, prompt_name="query", convert_to_numpy=True)
    assert_close_to_reference("qwen3-embed prompt_name=query", served, reference)
    assert float(np.abs(served - embed(arch_stack, "qwen3-embed", texts)).max()) > 1e-2, "the prompt must count"

    tokens = post_json(arch_stack, "/tokenize", {"inputs": texts, "prompt_name": "query", "model": "qwen3-embed"})
    expected = reference_model.tokenizer([QWEN3_QUERY_PROMPT + t for t in texts])["input_ids"]
    assert [[token["id"] for token in row] for row in tokens] == expected
    assert all(row[-1] == reference_model.tokenizer.eos_token_id for row in expected)


def test_long_inputs_are_truncated_or_refused(arch_stack, repositories):
    """max_num_tokens=48 capped llama-embed's maximum at 48 tokens: past it, truncated only when asked."""
    manifest = json.loads((repositories["llama-embed"] / "llama-embed" / "manifest.json").read_text())
    assert (manifest["max_length"], manifest["max_num_tokens"]) == (48, 48)
    long_text = TEXTS[-1]
    refused = httpx.post(f"{arch_stack.base_url}/embed",
                         json={"inputs": [TEXTS[0], long_text], "model": "llama-embed", "truncate": False})
    assert refused.status_code == 422
    assert "input 1 has" in refused.json()["error"] and "maximum of 48" in refused.json()["error"]
    truncated = post_json(arch_stack, "/embed", {"inputs": [long_text], "model": "llama-embed", "truncate": True})
    assert len(truncated[0]) == 32


# --- rerankers and classifiers ---


def sequence_logits(checkpoint: Path, max_length: int, items: list[tuple[str, str | None]]) -> np.ndarray:
    """transformers' own logits, each input alone (no padding at all)."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    rows = []
    with torch.inference_mode():
        for text, pair in items:
            encoded = tokenizer(text, pair, truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(**encoded).logits[0].numpy())
    return np.stack(rows)


def served_logits(stack: Stack, case: Case, items: list[tuple[str, str | None]]) -> np.ndarray:
    if case.num_labels == 1:  # a reranker: one query against many documents
        answer = post_json(stack, "/rerank", {"query": items[0][0], "texts": [pair for _, pair in items],
                                         "model": case.name, "raw_scores": True, "truncate": True})
        return np.array([[item["score"]] for item in sorted(answer, key=lambda item: item["index"])])
    answer = post_json(stack, "/predict", {"inputs": [[text] for text, _ in items], "model": case.name,
                                      "raw_scores": True, "truncate": True})
    order = [f"label_{i}" for i in range(case.num_labels)]
    return np.array([[{p["label"]: p["score"] for p in row}[label] for label in order] for row in answer])


@pytest.mark.parametrize("case", SCORERS, ids=lambda case: case.name)
def test_scores_match_transformers(arch_stack, checkpoints, case):
    items = [(QUERY, text) for text in TEXTS] if case.num_labels == 1 else [(text, None) for text in TEXTS]
    served = served_logits(arch_stack, case, items)
    reference = sequence_logits(checkpoints[case.name], case.max_length, items)
    assert np.ptp(reference[:, 0]) > 1e-3, "random heads must still tell inputs apart"
    assert_close_to_reference(case.name, served, reference)
    alone = [served_logits(arch_stack, case, [item])[0] for item in items]
    assert_padding_free(case.name, list(served), alone)


# --- NER ---


def token_logits(checkpoint: Path, max_length: int, texts: list[str]) -> list[tuple[list[int], np.ndarray]]:
    """Per text, alone: ids and transformers' logits of its non-special tokens."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForTokenClassification.from_pretrained(checkpoint).eval()
    results = []
    for text in texts:
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_special_tokens_mask=True,
                            return_tensors="pt")
        special = encoded.pop("special_tokens_mask")[0].bool()
        with torch.inference_mode():
            logits = model(**encoded).logits[0][~special].numpy()
        results.append((encoded["input_ids"][0][~special].tolist(), logits))
    return results


def served_token_logits(stack: Stack, case: Case, texts: list[str], labels: list[str]) -> list[tuple[list, np.ndarray]]:
    answer = post_json(stack, "/predict_tokens", {"inputs": [texts], "model": case.name, "raw_scores": True,
                                             "aggregation_strategy": "none", "truncate": True})
    return [([entry["token_id"] for entry in entries],
             np.array([[entry["results"][label] for label in labels] for entry in entries]))
            for entries in answer]


@pytest.mark.parametrize("case", TAGGERS, ids=lambda case: case.name)
def test_ner_logits_match_transformers(arch_stack, checkpoints, case):
    config = json.loads((checkpoints[case.name] / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    served = served_token_logits(arch_stack, case, TEXTS, labels)
    references = token_logits(checkpoints[case.name], case.max_length, TEXTS)
    for text, (ids, logits), (reference_ids, reference) in zip(TEXTS, served, references, strict=True):
        assert ids == reference_ids, f"{case.name}: other tokens than transformers for {text[:30]!r}"
        assert_close_to_reference(case.name, logits, reference)
    alone = [served_token_logits(arch_stack, case, [text], labels)[0][1] for text in TEXTS]
    assert_padding_free(case.name, [logits for _, logits in served], alone)


# --- code shipped with a checkpoint (trust_remote_code) ---


def test_remote_code_model_runs_its_own_code(arch_stack, checkpoints, monkeypatch, tmp_path):
    """Built with --trust-remote-code from a local folder: served = the checkpoint's own model, not BERT's."""
    import transformers.dynamic_module_utils as dynamic

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    texts = TEXTS[:6]
    served = embed(arch_stack, CUSTOM, texts)
    reference = SentenceTransformer(str(checkpoints[CUSTOM]), device="cpu", trust_remote_code=True).encode(texts)
    assert_close_to_reference(CUSTOM, served, reference)
    plain_bert = tmp_path / "plain"
    make_tiny_bert(plain_bert, pooling="mean", normalize=True, seed=11)  # same weights, stock BertModel
    assert float(np.abs(served - SentenceTransformer(str(plain_bert), device="cpu").encode(texts)).max()) > 1e-2


def test_remote_code_is_never_run_without_the_flag(checkpoints, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    monkeypatch.setenv("CUSTOM_CODE_MARKER", str(marker))
    with pytest.raises(BuildError, match="--trust-remote-code"):
        build(BuildOptions(model=str(checkpoints[CUSTOM]), out=tmp_path / "out"), progress=lambda _: None)
    assert not marker.exists() and not (tmp_path / "out" / CUSTOM).exists()


@pytest.mark.parametrize(("auto_map", "message"), [
    ({"AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel"}, "another repository"),
    ({"AutoModel": "modeling_missing.CustomBertModel"}, "modeling_missing.py, which is not in"),
])
def test_remote_code_must_live_in_the_checkpoint(tmp_path, auto_map, message):
    from builder.inspect import inspect_checkpoint

    model = make_tiny_bert(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "auto_map": auto_map}))
    with pytest.raises(BuildError, match=message):
        inspect_checkpoint(model, "m", trust_remote_code=True)


# --- builder rules for long contexts and causal heads (no stack needed) ---


def test_parity_texts_are_capped_for_long_context_models():
    """A 32k-context model is checked on a long text, not a 32k-token one in torch on CPU; a short-context
    model's long text still overflows its maximum, so truncation is checked too."""
    from builder.parity import LONG_TEXT_WORDS, default_texts
    from trident.heads import simple_head
    from trident.spec import ModelSpec

    def longest(max_length: int) -> int:
        spec = ModelSpec(name="m", task="embedding", architecture="Qwen3Model", model_type="qwen3",
                         max_length=max_length, dim=32, head=simple_head("lasttoken"))
        return max(len(text.split()) for text in default_texts(spec))

    assert longest(64) > 64 and longest(512) > 512
    assert LONG_TEXT_WORDS < longest(32768) < LONG_TEXT_WORDS + 100


def test_max_length_past_max_num_tokens_is_refused(tmp_path):
    model = make_tiny_bert(tmp_path / "m")
    with pytest.raises(BuildError, match="more than --max-num-tokens 32"):
        build(BuildOptions(model=str(model), out=tmp_path / "out", max_length=64, max_num_tokens=32),
              progress=lambda _: None)


def test_causal_reranker_needs_a_pad_token_id(tmp_path):
    """Without config.pad_token_id transformers' causal head cannot find a padded input's last token."""
    from builder.inspect import inspect_checkpoint

    model = make_tiny_model(tmp_path / "m", "qwen3", head="seq-cls")
    config = json.loads((model / "config.json").read_text())
    assert inspect_checkpoint(model, "m").pad_token_id == config["pad_token_id"]
    (model / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    with pytest.raises(BuildError, match="no pad_token_id"):
        inspect_checkpoint(model, "m")
