"""Reranking, classification and NER through the real stack (tritonserver + gateway), against the
reference implementations, for tiny random BERT and XLM-RoBERTa models of each task.

References and tolerances (scores are fp32 on both sides):
- /rerank, /v1/rerank: sentence_transformers.CrossEncoder(...).predict (sigmoid), within 1e-4, same order.
- /predict: transformers.pipeline("text-classification", top_k=None), within 1e-4, same label order.
- /predict_tokens: transformers.pipeline("token-classification", aggregation_strategy=S) for all five S:
  the same entities (spans, labels, words), scores within 1e-4.
The largest difference of each comparison is printed (run with -s to see it).

The BERT reranker is built through `trident build --config` from a REMOTE_URL archive served by a local
HTTP server, with `webserver_default_route: /predict`, so the YAML path is exercised end to end.
(Wrong routes and bad bodies, which need no engine: tests/unit/test_task_routes.py.)
"""

from __future__ import annotations

import tarfile
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, pipeline

from testkit.factories import make_tiny_bert, make_tiny_model, sharpen_head
from testkit.stack import Stack
from tests.http_files import ArchiveServer

TOLERANCE = 1e-4
STRATEGIES = ("none", "simple", "first", "average", "max")
QUERY = "Where is Paris, the capital of France?"
DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "The quick brown fox jumps over the lazy dog.",
    "Zürich, São Paulo and Kraków: naïve café déjà vu.",
    "Paris, Paris, Paris: the same city named three times.",
    "东京は日本の首都です。Москва — столица России.",
    "Hyperparameterization and electroencephalography are unbelievably long words!",
    "a",
    "Berlin is the capital of Germany. " * 120,  # past every model's maximum: truncated
]
CLASSIFY_TEXTS = ["I love this!", "The stock market fell sharply today.", "Zürich café, naïve façade",
                  "東京とMoscow", "?", "word " * 700]
PAIRS = [("what is paris", "Paris is the capital of France."), ("emoji 😀", "A smiling face."),
         ("Zürich", "Zürich ist die größte Stadt der Schweiz.")]
NER_TEXTS = [
    "Apple is looking at buying U.K. startup for $1 billion",
    "Angela Merkel met Emmanuel Macron in Paris; Paris and Berlin, then Paris again.",
    "Zürich-based Nestlé acquired Blue Bottle Coffee for São Paulo's café.",
    "unbelievably hyperparameterization, electroencephalography!",
    "Jean-Pierre went to New York, New York... (twice)",
]
BIGGEST: dict[str, float] = {}  # comparison -> largest difference seen, printed at the end of the module


def note_gap(name: str, gap: float) -> None:
    BIGGEST[name] = max(BIGGEST.get(name, 0.0), gap)
    print(f"\n[max diff] {name}: {gap:.3e}")


# --- models and the stack ---


def make_checkpoints(root: Path) -> dict[str, Path]:
    """Sharpened heads (see factories.sharpen_head): scores spread, NER labels vary by token. The scales
    differ because random tiny BERTs pool nearly the same vector for every input, XLM-R ones do not."""
    return {
        "bert-reranker": sharpen_head(make_tiny_bert(root / "bert-reranker", head="seq-cls", num_labels=1, seed=5),
                                      500.0),
        "xlmr-reranker": sharpen_head(make_tiny_model(root / "xlmr-reranker", "xlm-roberta", head="seq-cls", seed=6),
                                      3.0),
        "bert-classifier": sharpen_head(make_tiny_bert(root / "bert-classifier", head="seq-cls", num_labels=3,
                                                       seed=7), 20.0),
        "xlmr-classifier": sharpen_head(make_tiny_model(root / "xlmr-classifier", "xlm-roberta", head="seq-cls",
                                                        num_labels=4, seed=8), 20.0),
        "bert-ner": sharpen_head(make_tiny_bert(root / "bert-ner", head="token-cls", seed=3), 10.0, 0.5),
        "xlmr-ner": sharpen_head(make_tiny_model(root / "xlmr-ner", "xlm-roberta", head="token-cls", seed=4), 10.0,
                                 0.5),
        "tiny-bert-mean": make_tiny_bert(root / "tiny-bert-mean", pooling="mean", normalize=True, seed=1),
    }


def build_from_yaml(checkpoint: Path, work: Path) -> Path:
    """`trident build --config` with the checkpoint as a .tar.gz behind REMOTE_URL."""
    from cli.main import main

    archive_dir = work / "served"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "bert-reranker.tar.gz", "w:gz") as tar:
        tar.add(checkpoint, arcname="bert-reranker")
    out = work / "repository"
    with ArchiveServer(archive_dir) as server:
        config = work / "bei.yaml"
        config.write_text(
            "model_name: bert-reranker\n"
            "trt_llm:\n"
            "  build:\n"
            "    base_model: encoder_bert\n"
            "    checkpoint_repository:\n"
            "      source: REMOTE_URL\n"
            f"      repo: {server.url('bert-reranker.tar.gz')}\n"
            "    max_num_tokens: 8192\n"
            "    quantization_type: no_quant\n"
            "  runtime:\n"
            "    webserver_default_route: /predict\n"
        )
        assert main(["build", "--config", str(config), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_checkpoints(tmp_path_factory.mktemp("task-models"))


@pytest.fixture(scope="module")
def task_stack(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from cli.main import _build_options, parser
    from cli.serve import ModelArg, prepare_model

    options = _build_options(parser().parse_args(["serve"]))
    repositories = [prepare_model(ModelArg(str(path), name), options, progress=lambda _: None)
                    for name, path in checkpoints.items() if name != "bert-reranker"]
    repositories.append(build_from_yaml(checkpoints["bert-reranker"], tmp_path_factory.mktemp("yaml-build")))
    args = [arg for repository in repositories for arg in ("--repository", str(repository))]
    server = Stack([*args, "--default-model", "bert-classifier"],
                   tmp_path_factory.mktemp("task-stack") / "serve.log").start()
    yield server
    server.stop()
    if BIGGEST:
        print("\nlargest differences vs the references:\n" + "\n".join(f"  {k}: {v:.3e}" for k, v in BIGGEST.items()))


def post(stack: Stack, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{stack.base_url}{path}", json=body, timeout=60)


def ok(stack: Stack, path: str, body: object) -> object:
    response = post(stack, path, body)
    assert response.status_code == 200, response.text
    return response.json()


# --- rerankers ---


@pytest.mark.parametrize("model", ["bert-reranker", "xlmr-reranker"])
def test_rerank_matches_cross_encoder(task_stack, checkpoints, model):
    encoder = CrossEncoder(str(checkpoints[model]), device="cpu")
    reference = encoder.predict([(QUERY, d) for d in DOCUMENTS])
    answer = ok(task_stack, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "model": model, "return_text": True,
                                        "truncate": True})
    assert [item["index"] for item in answer] == list(np.argsort(-reference, kind="stable"))
    assert all(item["text"] == DOCUMENTS[item["index"]] for item in answer)
    served = np.array([item["score"] for item in sorted(answer, key=lambda item: item["index"])])
    assert np.ptp(reference) > 0.005, "the sharpened head must spread the scores"
    gap = float(np.abs(served - reference).max())
    note_gap(f"rerank {model} vs CrossEncoder.predict (sigmoid)", gap)
    assert gap <= TOLERANCE

    raw = ok(task_stack, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "model": model, "raw_scores": True,
                                     "truncate": True})
    logits = CrossEncoder(str(checkpoints[model]), device="cpu", activation_fn=torch.nn.Identity()).predict(
        [(QUERY, d) for d in DOCUMENTS])
    served_raw = np.array([item["score"] for item in sorted(raw, key=lambda item: item["index"])])
    assert "text" not in raw[0]
    assert float(np.abs(served_raw - logits).max()) <= TOLERANCE


def test_cohere_rerank_shape_and_top_n(task_stack):
    tei = ok(task_stack, "/rerank", {"query": QUERY, "texts": DOCUMENTS, "model": "xlmr-reranker", "truncate": True})
    documents = [DOCUMENTS[0], {"text": DOCUMENTS[1]}, *DOCUMENTS[2:]]
    answer = ok(task_stack, "/v1/rerank", {"model": "xlmr-reranker", "query": QUERY, "documents": documents,
                                           "top_n": 3, "return_documents": True})
    assert answer["model"] == "xlmr-reranker" and answer["usage"]["total_tokens"] > 0
    assert [r["index"] for r in answer["results"]] == [item["index"] for item in tei[:3]]
    assert [r["relevance_score"] for r in answer["results"]] == [item["score"] for item in tei[:3]]
    assert all(r["document"] == {"text": DOCUMENTS[r["index"]]} for r in answer["results"])
    bare = ok(task_stack, "/v1/rerank", {"query": QUERY, "documents": DOCUMENTS[:3], "model": "xlmr-reranker"})
    assert len(bare["results"]) == 3 and "document" not in bare["results"][0]


# --- classifiers ---


def _pipeline_scores(classifier, inputs: list) -> list[dict[str, float]]:
    return [{p["label"]: p["score"] for p in answer} for answer in classifier(inputs, top_k=None, truncation=True)]


def _label_scores(predictions: list[dict]) -> dict[str, float]:
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True), "predictions are sorted by score, descending"
    return {p["label"]: p["score"] for p in predictions}


def _gap(served: list[dict[str, float]], reference: list[dict[str, float]]) -> float:
    assert [list(s) for s in served] == [sorted(r, key=r.get, reverse=True) for r in reference]
    return max(abs(s[label] - r[label]) for s, r in zip(served, reference, strict=True) for label in r)


@pytest.mark.parametrize("model", ["bert-classifier", "xlmr-classifier", "bert-reranker"])
def test_predict_matches_text_classification_pipeline(task_stack, checkpoints, model):
    classifier = pipeline("text-classification", model=str(checkpoints[model]), device="cpu")
    singles = ok(task_stack, "/predict", {"inputs": [[t] for t in CLASSIFY_TEXTS], "model": model, "truncate": True})
    pairs = ok(task_stack, "/predict", {"inputs": [list(p) for p in PAIRS], "model": model})
    gap = max(
        _gap([_label_scores(p) for p in singles], _pipeline_scores(classifier, CLASSIFY_TEXTS)),
        _gap([_label_scores(p) for p in pairs],
             _pipeline_scores(classifier, [{"text": a, "text_pair": b} for a, b in PAIRS])),
    )
    note_gap(f"predict {model} vs pipeline('text-classification', top_k=None)", gap)
    assert gap <= TOLERANCE
    # Not a batch: one text, or one pair, answers a flat list.
    assert ok(task_stack, "/predict", {"inputs": CLASSIFY_TEXTS[0], "model": model}) == singles[0]
    assert ok(task_stack, "/predict", {"inputs": list(PAIRS[0]), "model": model}) == pairs[0]
    assert ok(task_stack, "/predict", {"inputs": [CLASSIFY_TEXTS[0]], "model": model}) == singles[0]


def test_predict_raw_scores_are_logits(task_stack, checkpoints):
    path = checkpoints["xlmr-classifier"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        logits = model(**tokenizer(CLASSIFY_TEXTS[:3], padding=True, return_tensors="pt")).logits.numpy()
    served = ok(task_stack, "/predict", {"inputs": [[t] for t in CLASSIFY_TEXTS[:3]], "model": "xlmr-classifier",
                                         "raw_scores": True})
    labels = [model.config.id2label[i] for i in range(logits.shape[1])]
    for row, predictions in zip(logits, served, strict=True):
        by_label = _label_scores(predictions)
        assert max(abs(by_label[label] - float(value)) for label, value in zip(labels, row, strict=True)) <= TOLERANCE


# --- NER ---


def _expected_entities(tokenizer, entities: list[dict], text: str, strategy: str) -> list[dict]:
    """The pipeline's answer in BEI's shape: aggregated entities carry the original text and token_id 0."""
    ids = tokenizer(text)["input_ids"]
    expected = []
    for entity in entities:
        start, end = entity["start"], entity["end"]
        if strategy == "none":
            token, token_id, label = entity["word"], ids[entity["index"]], entity["entity"]
        else:
            token, token_id, label = text[start:end], 0, entity["entity_group"]
        expected.append({"token": token, "token_id": token_id, "start": start, "end": end,
                         "results": {label: float(entity["score"])}})
    return expected


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("model", ["bert-ner", "xlmr-ner"])
def test_ner_matches_token_classification_pipeline(task_stack, checkpoints, model, strategy):
    path = str(checkpoints[model])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the pipeline's whitespace-fallback notice (XLM-R)
        ner = pipeline("token-classification", model=path, aggregation_strategy=strategy, device="cpu")
        reference = [ner(text) for text in NER_TEXTS]
    served = ok(task_stack, "/predict_tokens", {"inputs": [NER_TEXTS], "model": model, "truncate": True,
                                                "aggregation_strategy": strategy})
    assert len(served) == len(NER_TEXTS)
    assert sum(map(len, reference)) >= len(NER_TEXTS), "the sharpened head must find entities"
    gap = 0.0
    for text, entities, answer in zip(NER_TEXTS, reference, served, strict=True):
        expected = _expected_entities(ner.tokenizer, entities, text, strategy)
        assert [{**e, "results": list(e["results"])} for e in answer] == \
               [{**e, "results": list(e["results"])} for e in expected], text
        gap = max([gap, *(abs(a["results"][label] - score) for a, e in zip(answer, expected, strict=True)
                          for label, score in e["results"].items())])
    note_gap(f"predict_tokens {model} aggregation_strategy={strategy} vs pipeline", gap)
    assert gap <= TOLERANCE


@pytest.mark.parametrize("model", ["bert-ner", "xlmr-ner"])
def test_ner_raw_scores_are_token_logits(task_stack, checkpoints, model):
    path = checkpoints[model]
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch_model = AutoModelForTokenClassification.from_pretrained(path).eval()
    text = NER_TEXTS[2]
    encoding = tokenizer(text, return_special_tokens_mask=True, return_offsets_mapping=True)
    with torch.no_grad():
        logits = torch_model(input_ids=torch.tensor([encoding["input_ids"]])).logits[0].numpy()
    served = ok(task_stack, "/predict_tokens", {"inputs": [[text]], "model": model, "raw_scores": True})[0]
    keep = [i for i, special in enumerate(encoding["special_tokens_mask"]) if not special]
    assert [(e["start"], e["end"], e["token_id"]) for e in served] == \
           [(*encoding["offset_mapping"][i], encoding["input_ids"][i]) for i in keep]
    labels = torch_model.config.id2label
    for entry, i in zip(served, keep, strict=True):
        assert len(entry["results"]) == len(labels)
        assert max(abs(entry["results"][labels[j]] - float(logits[i, j])) for j in labels) <= TOLERANCE


def test_ner_input_shapes(task_stack):
    batch = ok(task_stack, "/predict_tokens", {"inputs": [NER_TEXTS[:2]], "model": "bert-ner",
                                               "aggregation_strategy": "MAX"})
    assert ok(task_stack, "/predict_tokens", {"inputs": NER_TEXTS[:2], "model": "bert-ner",
                                              "aggregation_strategy": "max"}) == batch
    assert ok(task_stack, "/predict_tokens", {"inputs": [[NER_TEXTS[0]], [NER_TEXTS[1]]], "model": "bert-ner",
                                              "aggregation_strategy": "max"}) == batch
    assert ok(task_stack, "/predict_tokens", {"inputs": NER_TEXTS[0], "model": "bert-ner",
                                              "aggregation_strategy": "max"}) == batch[:1]


# --- routing ---


def test_default_route_answers_post_root(task_stack):
    ner = {"inputs": [[NER_TEXTS[0]]], "aggregation_strategy": "simple"}
    assert ok(task_stack, "/", {**ner, "model": "xlmr-ner"}) == ok(task_stack, "/predict_tokens",
                                                                   {**ner, "model": "xlmr-ner"})
    # The YAML build set webserver_default_route: /predict for this reranker (BEI's Qwen3-Reranker advice).
    pair = {"inputs": [[QUERY, DOCUMENTS[0]]], "model": "bert-reranker"}
    assert ok(task_stack, "/", pair) == ok(task_stack, "/predict", pair)
    rerank = {"query": QUERY, "texts": DOCUMENTS[:3], "model": "xlmr-reranker", "truncate": True}
    assert ok(task_stack, "/", rerank) == ok(task_stack, "/rerank", rerank)
    # No model named: the default model (bert-classifier) answers as /predict.
    assert ok(task_stack, "/", {"inputs": "hello"}) == ok(task_stack, "/predict", {"inputs": "hello"})


def test_manifest_records_task_labels_and_route(task_stack):
    info = httpx.get(f"{task_stack.base_url}/info", params={"model": "bert-reranker"}).json()
    assert (info["task"], info["default_route"], info["labels"], info["max_num_tokens"]) == \
           ("reranker", "/predict", ["score"], 8192)
    info = httpx.get(f"{task_stack.base_url}/info", params={"model": "xlmr-ner"}).json()
    assert (info["task"], info["default_route"]) == ("ner", "/predict_tokens")
    assert info["labels"][:3] == ["O", "B-PER", "I-PER"]


# --- the Baseten Performance Client, as BEI users call it ---


def test_baseten_performance_client(task_stack):
    from baseten_performance_client import PerformanceClient

    client = PerformanceClient(base_url=task_stack.base_url, api_key="unused")
    texts = ["Paris is in France.", "Zürich café", "hello"]

    embedded = client.embed(input=texts, model="tiny-bert-mean")
    reference = ok(task_stack, "/v1/embeddings", {"input": texts, "model": "tiny-bert-mean"})
    np.testing.assert_allclose(np.array([d.embedding for d in embedded.data]),
                               np.array([d["embedding"] for d in reference["data"]]), atol=1e-6)

    # No model name: /rerank goes to the first served reranker, /predict to the default model.
    # (The client's JSON parser may round a float's last bit differently: scores compare to 1e-12.)
    reranked = client.rerank(query=QUERY, texts=DOCUMENTS[:4], return_text=True)
    tei = ok(task_stack, "/rerank", {"query": QUERY, "texts": DOCUMENTS[:4], "model": "bert-reranker"})
    assert [r.index for r in reranked.data] == [r["index"] for r in tei]
    np.testing.assert_allclose([r.score for r in reranked.data], [r["score"] for r in tei], rtol=0, atol=1e-12)
    assert reranked.data[0].text == DOCUMENTS[tei[0]["index"]]

    classified = client.classify(inputs=texts)
    tei = ok(task_stack, "/predict", {"inputs": [[t] for t in texts], "model": "bert-classifier"})
    assert [[r.label for r in group] for group in classified.data] == [[p["label"] for p in group] for group in tei]
    np.testing.assert_allclose([[r.score for r in group] for group in classified.data],
                               [[p["score"] for p in group] for group in tei], rtol=0, atol=1e-12)

    payloads = [{"inputs": [[text]], "aggregation_strategy": strategy, "model": "bert-ner"}
                for text, strategy in zip(NER_TEXTS, STRATEGIES, strict=True)]
    posted = list(client.batch_post("/predict_tokens", payloads).data)
    direct = [ok(task_stack, "/predict_tokens", payload) for payload in payloads]
    assert _without_scores(posted) == _without_scores(direct)
    np.testing.assert_allclose(_scores(posted), _scores(direct), rtol=0, atol=1e-12)


def _without_scores(answers: list) -> list:
    return [[[{**e, "results": list(e["results"])} for e in text] for text in answer] for answer in answers]


def _scores(answers: list) -> list[float]:
    return [v for answer in answers for text in answer for e in text for v in e["results"].values()]
