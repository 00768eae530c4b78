"""Families published in layouts that need their own code, served as published (builder/families/).

Each case is a tiny random checkpoint in the family's published layout (testkit/published.py: original
config keys and weight names, auto_map to code that is absent), built through `trident serve`'s own path
and served, all of them, by ONE tritonserver + gateway. The answers are compared with references that
never go through Trident's conversions: transformers' native classes on the same weights saved in their
native layout (or sentence-transformers on a native folder), each input alone:

- embeddings: max abs <= 1e-4 and cosine >= 0.9999;
- scores: within 1e-4;
- every input alone equals itself inside a mixed-length batch within 1e-5.

The largest difference of each comparison is printed at the end of the module (run with -s).
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from builder.errors import BuildError
from testkit import published as pub
from testkit.stack import Stack, embed, post_json

TOLERANCE = 1e-4
MIN_COSINE = 0.9999
PADDING_TOLERANCE = 1e-5
MAX_LENGTH = 64
BIGGEST: dict[str, float] = {}

TEXTS = [
    "hi",
    "The quick brown fox jumps over the lazy dog.",
    "Zürich, São Paulo, Kraków: naïve café déjà vu.",
    "I love this 😀🚀 so much!!!",
    "people often find the water by the house very cold in the long winter nights " * 3,
    "a",
    "the world is a small place and every day we make new words " * 40,  # past the maximum: truncated
]

# name -> what makes it, under its own folder
MAKERS: dict[str, Callable[[Path], pub.PublishedModel | Path]] = {
    "llama-bidirec": lambda root: pub.make_llama_bidirec(root, seed=1),
    "qwen3-bidirectional": lambda root: pub.make_bidirectional_flag(root, "qwen3", seed=2),
    "embeddinggemma": lambda root: pub.make_embedding_gemma(root, seed=3),
    "nomic-v1.5": lambda root: pub.make_nomic(root, seed=4),
    "nomic-ntk": lambda root: pub.make_nomic(root, seed=5, rotary_scaling_factor=2.0),
    "gte-en": lambda root: pub.make_gte(root, seed=7),
    "gte-reranker": lambda root: pub.make_gte(root, seed=8, reranker=True),
    "jina-v2": lambda root: pub.make_jina_v2(root, seed=9),
    "jina-v2-code": lambda root: pub.make_jina_v2(root, seed=10, qk_post_norm=True),
    "jina-reranker-v1": lambda root: pub.make_jina_v2(root, seed=11, reranker=True),
    "jina-v3": lambda root: pub.make_jina_v3(root, seed=12),
    "qwen3-reranker": lambda root: pub.make_qwen3_reranker(root, seed=13),
}
# Past 2,048 tokens (every word of it is one token of the tiny vocabularies): beyond Nomic's trained length.
LONG_TEXT = "the quick brown fox jumps over the lazy dog near london and paris " * 160
QUERY = "what is the capital of france?"


def note_gap(name: str, gap: float) -> None:
    BIGGEST[name] = max(BIGGEST.get(name, 0.0), gap)


# --- checkpoints, builds, the stack ---


def _prepare(name: str, path: str) -> Path:
    """One build in a worker process: one torch thread each, two builds at a time on two cores."""
    torch.set_num_threads(1)
    from cli.serve import ModelArg, prepare_model

    options = {"task": None, "pooling": None, "max_length": None, "max_num_tokens": 16384,
               "trust_remote_code": False}
    return prepare_model(ModelArg(path, name), options, progress=lambda _: None)


def published_folder(made: pub.PublishedModel | Path) -> Path:
    return made.published if isinstance(made, pub.PublishedModel) else made


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pub.PublishedModel | Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: make(root / name) for name, make in MAKERS.items()}


@pytest.fixture(scope="module")
def repositories(models: dict[str, pub.PublishedModel | Path]) -> dict[str, Path]:
    """Every build, two at a time (cached by content hash: a rerun builds nothing)."""
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_prepare, name, str(published_folder(made))) for name, made in models.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def family_stack(repositories: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    args = [arg for repository in repositories.values() for arg in ("--repository", str(repository))]
    server = Stack(args, tmp_path_factory.mktemp("families-stack") / "serve.log").start()
    yield server
    server.stop()
    if BIGGEST:
        print("\nlargest differences:\n" + "\n".join(f"  {k}: {v:.2e}" for k, v in sorted(BIGGEST.items())))


def assert_embeddings_close(name: str, served: np.ndarray, reference: np.ndarray) -> None:
    assert served.shape == reference.shape, f"{name}: {served.shape} != {reference.shape}"
    cosine = (served * reference).sum(1) / np.linalg.norm(served, axis=1) / np.linalg.norm(reference, axis=1)
    gap = float(np.abs(served - reference).max())
    note_gap(f"{name} 1 - cosine", float(1 - cosine.min()))
    note_gap(f"{name} vs reference (max abs)", gap)
    assert cosine.min() >= MIN_COSINE, f"{name}: cosine {cosine.min():.6f}"
    assert gap <= TOLERANCE, f"{name}: max abs diff {gap:.2e} > {TOLERANCE}"


def assert_padding_free(name: str, batched: list[np.ndarray], alone: list[np.ndarray]) -> None:
    gap = max(float(np.abs(b - a).max()) for b, a in zip(batched, alone, strict=True))
    note_gap(f"{name} alone vs mixed batch", gap)
    assert gap <= PADDING_TOLERANCE, f"{name}: an input alone differs from itself in a mixed batch by {gap:.2e}"


def check_embeddings(stack: Stack, name: str, texts: list[str], reference: np.ndarray, **extra: object) -> None:
    served = embed(stack, name, texts, **extra)
    assert_embeddings_close(name, served, reference)
    alone = [embed(stack, name, [text], **extra)[0] for text in texts]
    assert_padding_free(name, list(served), alone)


def normalized(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def mean_pool(hidden: torch.Tensor) -> np.ndarray:
    return hidden[0].mean(0).numpy()


# --- bidirectional decoders ---


def bidirectional_reference(native: Path, texts: list[str]) -> np.ndarray:
    """The native decoder with its causal mask replaced by the padding mask: each text alone, so an all-zero
    additive 4D mask (every token sees every token), mean pooled, normalized."""
    tokenizer = AutoTokenizer.from_pretrained(native)
    model = AutoModel.from_pretrained(native, attn_implementation="eager").eval()
    assert getattr(model.config, "is_causal", True), "the reference must be the plain (causal) class"
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")["input_ids"]
            mask = torch.zeros(1, 1, ids.shape[1], ids.shape[1])
            rows.append(mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state))
    return normalized(np.stack(rows))


@pytest.mark.parametrize("name", ["llama-bidirec", "qwen3-bidirectional"])
def test_bidirectional_decoders(family_stack, models, name):
    texts = [pub.NEMOTRON_PROMPTS["query"] + text for text in TEXTS] if name == "llama-bidirec" else TEXTS
    reference = bidirectional_reference(models[name].native, texts)
    extra = {"prompt_name": "query"} if name == "llama-bidirec" else {}
    check_embeddings(family_stack, name, TEXTS, reference, **extra)


def test_bidirectional_is_not_causal(family_stack, models):
    """A causal run of the same weights is far from what is served: the conversion is what makes it match."""
    tokenizer = AutoTokenizer.from_pretrained(models["qwen3-bidirectional"].native)
    model = AutoModel.from_pretrained(models["qwen3-bidirectional"].native).eval()
    with torch.inference_mode():
        causal = normalized(np.stack([mean_pool(model(**tokenizer(t, return_tensors="pt")).last_hidden_state)
                                      for t in TEXTS[1:3]]))
    assert float(np.abs(embed(family_stack, "qwen3-bidirectional", TEXTS[1:3]) - causal).max()) > 1e-2


def test_llama_bidirec_without_sentence_transformers_files_pools_mean(tmp_path):
    """Without modules.json the config's `pooling: avg` decides (mean, normalized), not the decoder's last token."""
    from builder.families import native_checkpoint
    from builder.inspect import inspect_checkpoint

    made = pub.make_llama_bidirec(tmp_path / "m", sentence_transformers=False)
    with native_checkpoint(made.published, None, tmp_path / "work", lambda _: None) as native:
        spec = inspect_checkpoint(native, "m")
        config = json.loads((native / "config.json").read_text())
    assert (config["model_type"], config["is_causal"], config["architectures"]) == ("llama", False, ["LlamaModel"])
    assert "auto_map" not in config
    assert [module["type"] for module in spec.head] == ["Pooling", "Normalize"] and spec.pooling == "mean"


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "qwen3"])
def test_use_bidirectional_attention_turns_causality_off(tmp_path, family):
    from builder.families import native_checkpoint

    made = pub.make_bidirectional_flag(tmp_path, family)
    with native_checkpoint(made.published, None, tmp_path / "work", lambda _: None) as native:
        config = json.loads((native / "config.json").read_text())
        assert (native / "model.safetensors").resolve() == (made.published / "model.safetensors").resolve()
    assert config["model_type"] == family and config["is_causal"] is False
    assert "use_bidirectional_attention" not in config


# --- EmbeddingGemma ---


@pytest.mark.parametrize("prompt_name", [None, "query", "document", "STS"])
def test_embeddinggemma_matches_sentence_transformers(family_stack, models, prompt_name):
    from sentence_transformers import SentenceTransformer

    reference_model = SentenceTransformer(str(models["embeddinggemma"]), device="cpu")
    reference = reference_model.encode(TEXTS, prompt_name=prompt_name, convert_to_numpy=True, batch_size=4)
    extra = {"prompt_name": prompt_name} if prompt_name else {}
    check_embeddings(family_stack, "embeddinggemma", TEXTS, reference, **extra)


# --- encoders: Nomic-BERT, GTE ---


def encoder_reference(native: Path, texts: list[str], *, pooling: str = "mean",
                      inv_freq: torch.Tensor | None = None) -> np.ndarray:
    """The native class on each text alone, pooled as the model's modules say, normalized. `inv_freq` replaces
    the rotary frequencies (GTE's NTK, written from new-impl's code in testkit/published.py)."""
    tokenizer = AutoTokenizer.from_pretrained(native)
    model = AutoModel.from_pretrained(native).eval()
    if inv_freq is not None:
        model.rotary_emb.inv_freq = inv_freq
    rows = []
    with torch.inference_mode():
        for text in texts:
            hidden = model(**tokenizer(text, truncation=True, max_length=8192, return_tensors="pt")).last_hidden_state
            rows.append(mean_pool(hidden) if pooling == "mean" else hidden[0, 0].numpy())
    return normalized(np.stack(rows))


@pytest.mark.parametrize("name", ["nomic-v1.5", "nomic-ntk"])
def test_nomic_matches_the_native_class(family_stack, models, name):
    """Short texts and one past 2,048 tokens; with rotary_scaling_factor (dynamic NTK) the long one gets its own
    base, as transformers' `dynamic` rope gives it alone, even inside a batch of short ones."""
    texts = [*TEXTS, LONG_TEXT]
    check_embeddings(family_stack, name, texts, encoder_reference(models[name].native, texts))


def test_nomic_prompts_and_matryoshka(family_stack, models):
    native = models["nomic-v1.5"].native
    for prompt_name, prefix in (("query", "search_query: "), ("document", "search_document: ")):
        reference = encoder_reference(native, [prefix + text for text in TEXTS])
        check_embeddings(family_stack, "nomic-v1.5", TEXTS, reference, prompt_name=prompt_name)
    reference = normalized(encoder_reference(native, TEXTS)[:, :16])
    check_embeddings(family_stack, "nomic-v1.5", TEXTS, reference, dimensions=16)


def test_nomic_dynamic_ntk_changes_long_inputs_only(family_stack, models):
    """Without the scaling the long text would embed otherwise; short ones are untouched by it."""
    from transformers import NomicBertModel

    native = models["nomic-ntk"].native
    plain = NomicBertModel.from_pretrained(native, rope_parameters={"rope_type": "default", "rope_theta": 1000.0})
    tokenizer = AutoTokenizer.from_pretrained(native)
    with torch.inference_mode():
        unscaled = normalized(np.stack([mean_pool(plain(**tokenizer(t, return_tensors="pt")).last_hidden_state)
                                        for t in (TEXTS[1], LONG_TEXT)]))
    served = embed(family_stack, "nomic-ntk", [TEXTS[1], LONG_TEXT])
    assert float(np.abs(served[0] - unscaled[0]).max()) < TOLERANCE
    assert float(np.abs(served[1] - unscaled[1]).max()) > 1e-3


def test_gte_embeddings_with_ntk_rope(family_stack, models):
    texts = [*TEXTS, LONG_TEXT]
    native = models["gte-en"].native
    reference = encoder_reference(native, texts, pooling="cls", inv_freq=pub.gte_ntk_inv_freq(8))
    check_embeddings(family_stack, "gte-en", texts, reference)
    without_ntk = encoder_reference(native, [LONG_TEXT], pooling="cls")
    assert float(np.abs(embed(family_stack, "gte-en", [LONG_TEXT]) - without_ntk).max()) > 1e-3


def rerank(stack: Stack, model: str, query: str, documents: list[str], **extra: object) -> np.ndarray:
    body = {"query": query, "texts": documents, "model": model, "truncate": True, **extra}
    answer = post_json(stack, "/rerank", body)
    return np.array([item["score"] for item in sorted(answer, key=lambda item: item["index"])])


def check_scores(stack: Stack, name: str, documents: list[str], reference: np.ndarray, **extra: object) -> None:
    served = rerank(stack, name, QUERY, documents, **extra)
    gap = float(np.abs(served - reference).max())
    note_gap(f"{name} vs reference (max abs)", gap)
    assert gap <= TOLERANCE, f"{name}: scores differ by {gap:.2e}"
    assert np.ptp(reference) > 1e-3, "random heads must still tell documents apart"
    alone = [rerank(stack, name, QUERY, [document], **extra) for document in documents]
    assert_padding_free(name, list(served), alone)


def test_gte_reranker_matches_the_native_class(family_stack, models):
    from transformers import AutoModelForSequenceClassification

    native = models["gte-reranker"].native
    tokenizer = AutoTokenizer.from_pretrained(native)
    model = AutoModelForSequenceClassification.from_pretrained(native).eval()
    with torch.inference_mode():
        logits = [model(**tokenizer(QUERY, text, truncation=True, max_length=8192, return_tensors="pt")).logits[0, 0]
                  for text in TEXTS]
    check_scores(family_stack, "gte-reranker", TEXTS, np.array(logits), raw_scores=True)


def test_nomic_in_the_native_layout_needs_no_conversion(tmp_path):
    """The converted layout (native config keys over the original weight names) is transformers' own to load:
    no family claims it, and transformers renames its weights into exactly the reference model."""
    from builder.families import Published, recognise
    from builder.families.staging import read_config

    made = pub.make_nomic(tmp_path, native_config_only=True)
    assert recognise(Published(made.published, read_config(made.published))) is None
    reference = AutoModel.from_pretrained(made.native).eval()
    loaded = AutoModel.from_pretrained(made.published).eval()
    ids = torch.randint(5, 200, (1, 40))
    with torch.inference_mode():
        assert torch.equal(reference(input_ids=ids)[0], loaded(input_ids=ids)[0])


@pytest.mark.parametrize(("maker", "auto_class"), [
    (lambda root: pub.make_nomic(root), "AutoModel"),
    (lambda root: pub.make_gte(root), "AutoModel"),
    (lambda root: pub.make_gte(root, reranker=True), "AutoModelForSequenceClassification"),
])
def test_published_weight_names_are_the_ones_transformers_renames(tmp_path, maker, auto_class):
    """transformers' own conversion (conversion_mapping.py) loads the published names written by testkit under the
    native config into exactly the native model: the layouts the tests publish are the real ones."""
    import transformers

    made = maker(tmp_path)
    reference = getattr(transformers, auto_class).from_pretrained(made.native).eval()
    converted = pub.loads_published_weights(made, auto_class)
    ids = torch.randint(5, 200, (1, 40))
    with torch.inference_mode():
        assert torch.equal(reference(input_ids=ids)[0], converted(input_ids=ids)[0])


# --- Jina-BERT v2: no class in transformers; the reference is written here from the published description ---


def paper_slopes(heads: int) -> list[float]:
    """ALiBi's head slopes (Press et al., their reference code): a geometric sequence from 2^(-8/n) for n a power of
    two; otherwise the power of two below, then every other slope of twice that many heads."""
    if math.log2(heads).is_integer():
        start = 2 ** (-8 / heads)
        return [start ** (i + 1) for i in range(heads)]
    below = 2 ** math.floor(math.log2(heads))
    return paper_slopes(below) + paper_slopes(2 * below)[::2][: heads - below]


def jina_v2_hidden(folder: Path, ids: list[int], types: list[int] | None = None) -> torch.Tensor:
    """jina-bert-implementation's forward for one unpadded input, from the weight names and config alone."""
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text())
    raw = load_file(str(folder / "model.safetensors"))
    w = {name.removeprefix("bert."): tensor for name, tensor in raw.items()}
    hidden, heads, inner = config["hidden_size"], config["num_attention_heads"], config["intermediate_size"]
    eps = config["layer_norm_eps"]

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (hidden,), w[f"{name}.weight"], w[f"{name}.bias"], eps)

    def dense(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.linear(x, w[f"{name}.weight"], w.get(f"{name}.bias"))

    tokens = torch.tensor(ids)
    segments = torch.tensor(types) if types is not None else torch.zeros_like(tokens)
    x = norm(w["embeddings.word_embeddings.weight"][tokens] + w["embeddings.token_type_embeddings.weight"][segments],
             "embeddings.LayerNorm")
    n = len(ids)
    distance = (torch.arange(n)[None, :] - torch.arange(n)[:, None]).abs().float()
    bias = -torch.tensor(paper_slopes(heads))[:, None, None] * distance
    gelu = torch.nn.functional.gelu  # exact erf GELU, as nn.GELU() in Jina's code
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (dense(x, f"{p}attention.self.{part}") for part in ("query", "key", "value"))
        code = f"{p}attention.self.layer_norm_q.weight" in w
        if code:
            q, k = norm(q, f"{p}attention.self.layer_norm_q"), norm(k, f"{p}attention.self.layer_norm_k")
        q, k, v = (t.view(n, heads, -1).transpose(0, 1) for t in (q, k, v))
        attention = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hidden // heads) + bias, dim=-1) @ v
        h = norm(dense(attention.transpose(0, 1).reshape(n, hidden), f"{p}attention.output.dense") + x,
                 f"{p}attention.output.LayerNorm")
        if code:
            h = norm(x + h, f"{p}layer_norm_1")
            u = dense(h, f"{p}mlp.up_gated_layer")
            x = norm(h + dense(u[:, :inner] * gelu(u[:, inner:]), f"{p}mlp.down_layer"), f"{p}layer_norm_2")
        else:
            g = dense(h, f"{p}mlp.gated_layers")
            x = norm(h + dense(gelu(g[:, :inner]) * g[:, inner:], f"{p}mlp.wo"), f"{p}mlp.layernorm")
    return x


@pytest.mark.parametrize("name", ["jina-v2", "jina-v2-code"])
def test_jina_v2_matches_the_published_description(family_stack, models, name):
    """Mean pooling over ALiBi attention, short texts and one past 2,048 tokens (ALiBi has no position limit)."""
    folder = models[name]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [*TEXTS, LONG_TEXT]
    with torch.inference_mode():
        reference = normalized(np.stack([
            jina_v2_hidden(folder, tokenizer(t, truncation=True, max_length=8192)["input_ids"]).mean(0).numpy()
            for t in texts]))
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > 2048
    check_embeddings(family_stack, name, texts, reference)


def test_jina_reranker_v1_matches_the_published_description(family_stack, models):
    from safetensors.torch import load_file

    folder = models["jina-reranker-v1"]
    w = load_file(str(folder / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    logits = []
    with torch.inference_mode():
        for text in TEXTS:
            encoded = tokenizer(QUERY, text, truncation=True, max_length=8192)
            assert set(encoded["token_type_ids"]) == {0, 1}
            first = jina_v2_hidden(folder, encoded["input_ids"], encoded["token_type_ids"])[0]
            pooled = torch.tanh(torch.nn.functional.linear(first, w["bert.pooler.dense.weight"],
                                                           w["bert.pooler.dense.bias"]))
            logits.append(float(torch.nn.functional.linear(pooled, w["classifier.weight"], w["classifier.bias"])))
    check_scores(family_stack, "jina-reranker-v1", TEXTS, np.array(logits), raw_scores=True)


def test_alibi_slopes_in_head_order():
    """Six heads: 2^-2, 2^-4, 2^-6, 2^-8 from four heads, then 2^-1, 2^-3 (every other one of eight's)."""
    from trident.models.jina_bert import alibi_slopes

    expected = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    assert paper_slopes(6) == pytest.approx(expected) and alibi_slopes(6) == pytest.approx(expected)


# --- jina-embeddings-v3: LoRA adapters, merged here into the native class as the published recipe says ---


def jina_v3_merged(made: pub.PublishedModel, task: str | None) -> torch.nn.Module:
    """JinaEmbeddingsV3Model with the task's adapter merged: W + (B[t] @ A[t]) * alpha / r for linear layers,
    W + (A[t] @ B[t]) * alpha / r for embedding tables; the fused Wqkv delta split into q, k, v. None: no adapter."""
    from safetensors.torch import load_file

    model = AutoModel.from_pretrained(made.native, add_pooling_layer=False).eval()
    if task is None:
        return model
    t, scaling = pub.JINA_V3_TASKS.index(task), pub.JINA_V3_ALPHA / pub.JINA_V3_RANK
    published = load_file(str(made.published / "model.safetensors"))
    parameters = dict(model.named_parameters())
    targets = {"embeddings.word_embeddings": ["embeddings.word_embeddings"],
               "embeddings.token_type_embeddings": ["embeddings.token_type_embeddings"]}
    for i in range(model.config.num_hidden_layers):
        targets[f"encoder.layers.{i}.mixer.Wqkv"] = [f"layers.{i}.self_attn.{p}_proj" for p in "qkv"]
        targets[f"encoder.layers.{i}.mixer.out_proj"] = [f"layers.{i}.self_attn.o_proj"]
        for fc in ("fc1", "fc2"):
            targets[f"encoder.layers.{i}.mlp.{fc}"] = [f"layers.{i}.mlp.{fc}"]
    with torch.no_grad():
        for source, native_names in targets.items():
            a = published[f"roberta.{source}.parametrizations.weight.0.lora_A"][t]
            b = published[f"roberta.{source}.parametrizations.weight.0.lora_B"][t]
            delta = (a @ b if "embeddings" in source else b @ a) * scaling
            for name, part in zip(native_names, delta.chunk(len(native_names), dim=0), strict=True):
                parameters[f"{name}.weight"].add_(part)
    return model


def jina_v3_reference(made: pub.PublishedModel, texts: list[str], task: str | None, *,
                      instruction: bool = True) -> np.ndarray:
    """As Jina's `encode(task=...)`: the task's instruction before each text, its adapter merged."""
    tokenizer = AutoTokenizer.from_pretrained(made.native)
    model = jina_v3_merged(made, task)
    prefix = pub.JINA_V3_INSTRUCTIONS[task] if task and instruction else ""
    with torch.inference_mode():
        return normalized(np.stack([mean_pool(model(**tokenizer(prefix + text, return_tensors="pt")).last_hidden_state)
                                    for text in texts]))


def test_jina_v3_engine_runs_every_adapter(repositories, models):
    """The built engine graph, fed each adapter's index as token types, equals the native class with that
    adapter merged (and index 0 the base weights); one mixed batch holds every adapter at once."""
    from trident.engines.onnxruntime import OnnxEngine
    from trident.spec import ModelSpec

    made = models["jina-v3"]
    folder = repositories["jina-v3"]
    spec = ModelSpec.load(folder / "jina-v3" / "manifest.json")
    engine = OnnxEngine(folder / "jina-v3_engine" / "1" / "model.onnx", spec, pad_id=spec.pad_token_id)
    tokenizer = AutoTokenizer.from_pretrained(made.native)
    tasks = [None, *pub.JINA_V3_TASKS]
    texts = [TEXTS[i % 4 + 1] for i in range(len(tasks))]
    ids = [np.array(tokenizer(t)["input_ids"]) for t in texts]
    served = normalized(np.stack(engine.run(ids, [np.full_like(row, i) for i, row in enumerate(ids)])))
    for i, task in enumerate(tasks):
        reference = jina_v3_reference(made, [texts[i]], task, instruction=False)
        assert_embeddings_close(f"jina-v3 engine adapter {task}", served[i:i + 1], reference)
    assert float(np.abs(served[1] - jina_v3_reference(made, [texts[1]], None)).max()) > 1e-2, "adapters must count"


def test_jina_v3_task_picks_the_adapter(family_stack, models):
    """`task` (Jina's API) picks the adapter and its instruction; a prompt_name naming a task does the same;
    neither: the base weights."""
    made = models["jina-v3"]
    for task in ("retrieval.query", "retrieval.passage", "text-matching"):
        reference = jina_v3_reference(made, TEXTS, task)
        check_embeddings(family_stack, "jina-v3", TEXTS, reference, task=task)
        assert_embeddings_close(f"jina-v3 prompt_name={task}", embed(family_stack, "jina-v3", TEXTS, prompt_name=task),
                                reference)
    check_embeddings(family_stack, "jina-v3", TEXTS[:3], jina_v3_reference(made, TEXTS[:3], None))
    refused = httpx.post(f"{family_stack.base_url}/v1/embeddings",
                         json={"input": "hi", "model": "jina-v3", "task": "summarization"})
    assert refused.status_code == 422 and "retrieval.query" in refused.text


# --- LLM rerankers: Qwen3-Reranker as published ---


def test_qwen3_reranker_scores_as_its_model_card(family_stack, models):
    """yes / no at the last token of the card's prompt: probabilities by default, log-odds with raw_scores,
    the request's instruction in the prompt when given; /v1/rerank's relevance_score is the probability."""
    folder = models["qwen3-reranker"]
    probabilities, log_odds = pub.qwen3_reranker_card_scores(folder, QUERY, TEXTS)
    check_scores(family_stack, "qwen3-reranker", TEXTS, np.array(probabilities))
    check_scores(family_stack, "qwen3-reranker", TEXTS, np.array(log_odds), raw_scores=True)
    instruction = "Given a question, find the passage that names a city"
    custom, _ = pub.qwen3_reranker_card_scores(folder, QUERY, TEXTS, instruction)
    check_scores(family_stack, "qwen3-reranker", TEXTS, np.array(custom), instruction=instruction)
    assert float(np.abs(np.array(custom) - probabilities).max()) > 1e-4, "the instruction must count"
    answer = post_json(family_stack, "/v1/rerank", {"query": QUERY, "documents": TEXTS, "model": "qwen3-reranker"})
    cohere = np.array([r["relevance_score"] for r in sorted(answer["results"], key=lambda r: r["index"])])
    assert float(np.abs(cohere - probabilities).max()) <= TOLERANCE
    predicted = post_json(family_stack, "/predict", {"inputs": [[QUERY, text] for text in TEXTS[:3]],
                                                "model": "qwen3-reranker"})
    assert float(np.abs(np.array([row[0]["score"] for row in predicted]) - probabilities[:3]).max()) <= TOLERANCE


def test_qwen3_reranker_engine_computes_one_row(repositories):
    """The engine's only vocabulary-sized weight is the embedding table it gathers from: the LM head is gone,
    its "yes" and "no" rows folded into one score row."""
    import onnx

    folder = repositories["qwen3-reranker"]
    manifest = json.loads((folder / "qwen3-reranker" / "manifest.json").read_text())
    graph = onnx.load(str(folder / "qwen3-reranker_engine" / "1" / "model.onnx")).graph
    vocabulary_sized = [i.name for i in graph.initializer if manifest["vocab_size"] in i.dims]
    assert len(manifest["id2label"]) == 1
    assert len(vocabulary_sized) == 1, vocabulary_sized
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 1


def test_instruction_is_refused_by_other_rerankers(family_stack):
    answer = httpx.post(f"{family_stack.base_url}/rerank",
                        json={"query": QUERY, "texts": ["a"], "model": "gte-reranker", "instruction": "x"})
    assert answer.status_code == 422 and "instruction" in answer.text


def test_causal_lm_is_a_reranker_only_when_it_says_so(tmp_path):
    """A *ForCausalLM is an LLM reranker by its folder's name (or the hub cache's), its _name_or_path, or
    --task reranker; otherwise it is left alone."""
    from builder.families import Published, llm_reranker
    from builder.families.staging import read_config

    folder = pub.make_qwen3_reranker(tmp_path)
    config = read_config(folder)
    assert llm_reranker.matches(Published(folder, config))
    assert llm_reranker.matches(Published(folder, config, task="embedding")) is False
    snapshot = tmp_path / "models--Qwen--Qwen3-Reranker-0.6B" / "snapshots" / "0123abc"
    snapshot.parent.mkdir(parents=True)
    assert llm_reranker.matches(Published(folder.rename(snapshot), config))
    plain = snapshot.rename(tmp_path / "Qwen3-0.6B-tiny")
    assert not llm_reranker.matches(Published(plain, config))
    assert llm_reranker.matches(Published(plain, {**config, "_name_or_path": "Qwen/Qwen3-Reranker-4B"}))
    assert llm_reranker.matches(Published(plain, config, task="reranker"))


# --- the torch engine (--engine torch) on the converted folders, CPU float32 ---


def torch_engine(made: pub.PublishedModel | Path, work: Path, attention: str = "padded"):
    from builder.families import native_checkpoint
    from builder.inspect import inspect_checkpoint
    from trident.engines.torch.engine import EngineOptions, TorchEngine

    with native_checkpoint(published_folder(made), None, work, lambda _: None) as folder:
        spec = inspect_checkpoint(folder, "m")
        return TorchEngine.load(folder, spec, device="cpu", options=EngineOptions(attention=attention)), spec


@pytest.mark.parametrize("attention", ["padded", "varlen"])
def test_torch_engine_bidirectional_llama(models, tmp_path, attention):
    """Varlen attention reads the config's is_causal: packed sequences see each other's every token."""
    made = models["llama-bidirec"]
    engine, _ = torch_engine(made, tmp_path, attention)
    tokenizer = AutoTokenizer.from_pretrained(made.native)
    ids = [np.array(tokenizer(t, truncation=True, max_length=MAX_LENGTH)["input_ids"]) for t in TEXTS]
    assert_embeddings_close(f"llama-bidirec torch engine {attention}", normalized(np.stack(engine.run(ids))),
                            bidirectional_reference(made.native, TEXTS))


def test_torch_engine_trident_models(models, tmp_path):
    """Trident's own classes load and run in the torch engine: Jina-BERT v2 and jina-embeddings-v3 (an adapter
    picked per input through the token types)."""
    engine, _ = torch_engine(models["jina-v2"], tmp_path / "v2")
    tokenizer = AutoTokenizer.from_pretrained(models["jina-v2"])
    ids = [tokenizer(t, truncation=True, max_length=8192)["input_ids"] for t in TEXTS]
    with torch.inference_mode():
        reference = normalized(np.stack([jina_v2_hidden(models["jina-v2"], row).mean(0).numpy() for row in ids]))
    assert_embeddings_close("jina-v2 torch engine", normalized(np.stack(engine.run([np.array(r) for r in ids]))),
                            reference)
    made = models["jina-v3"]
    engine, _ = torch_engine(made, tmp_path / "v3")
    rows = [np.array(AutoTokenizer.from_pretrained(made.native)(t)["input_ids"]) for t in TEXTS[:4]]
    query = 1 + pub.JINA_V3_TASKS.index("retrieval.query")
    served = normalized(np.stack(engine.run(rows, [np.full_like(row, query) for row in rows])))
    assert_embeddings_close("jina-v3 torch engine", served,
                            jina_v3_reference(made, TEXTS[:4], "retrieval.query", instruction=False))


# --- families Trident does not implement ---


def test_unknown_remote_code_is_still_refused(tmp_path):
    """A checkpoint of a family no conversion knows keeps the clear refusal."""
    from builder.build import BuildOptions, build
    from testkit.factories import make_tiny_bert

    model = make_tiny_bert(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="mystery_bert", auto_map={"AutoModel": "modeling_mystery.MysteryModel"})
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match="--trust-remote-code"):
        build(BuildOptions(model=str(model), out=tmp_path / "out"), progress=lambda _: None)
