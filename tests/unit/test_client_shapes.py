"""More client shapes against the fake Triton (real tokenizer and postprocess stages, a fake engine):
TEI's `/similarity`, Cohere's `/v2/rerank`, SageMaker's `GET /ping` and `POST /invocations`, and
`x-tokenization-time` as the tokenizer step reports it. Each answer is held to another route's answer
for the same inputs (the routes share the engine, so equal means equal bytes)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from testkit.gateway_server import error_message

SENTENCES = ["the quick brown fox", "a lazy dog", "Zürich, São Paulo and Kraków", "🍕 emoji"]


def test_similarity_is_the_cosine_of_the_embed_vectors(gateway):
    body = {"inputs": {"source_sentence": "the quick fox", "sentences": SENTENCES}, "model": "tiny-bert-cls"}
    response = gateway.post("/similarity", body)
    assert response.status_code == 200, response.text
    vectors = np.asarray(gateway.post("/embed", {"inputs": ["the quick fox", *SENTENCES], "model": "tiny-bert-cls",
                                                 "normalize": False}).json(), dtype=np.float64)
    cosine = vectors[1:] @ vectors[0] / (np.linalg.norm(vectors[1:], axis=1) * np.linalg.norm(vectors[0]))
    np.testing.assert_allclose(response.json(), cosine, atol=1e-6)
    assert len(response.json()) == len(SENTENCES)
    assert int(response.headers["x-compute-characters"]) == len("the quick fox") + sum(map(len, SENTENCES))


def test_similarity_prompt_applies_to_every_sentence(gateway):
    body = {"inputs": {"source_sentence": "q", "sentences": ["a", "b"]}, "model": "tiny-bert-cls"}
    plain = gateway.post("/similarity", body).json()
    prompted = gateway.post("/similarity", {**body, "prompt_name": "query"}).json()
    vectors = np.asarray(gateway.post("/embed", {"inputs": ["q", "a", "b"], "model": "tiny-bert-cls",
                                                 "prompt_name": "query"}).json(), dtype=np.float64)
    np.testing.assert_allclose(prompted, vectors[1:] @ vectors[0], atol=1e-6)
    assert prompted != plain


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"inputs": {"source_sentence": "q", "sentences": []}}, 400, "`sentences` must not be empty"),
        ({"inputs": {"source_sentence": "", "sentences": ["a"]}}, 400, "`source_sentence` item 0 is an empty"),
        ({"inputs": {"source_sentence": "q", "sentences": ["a", ""]}}, 400, "`sentences` item 1 is an empty"),
        ({"inputs": {"source_sentence": "q"}}, 422, "sentences"),
        ({"inputs": ["q", "a"]}, 422, "inputs"),
        ({"inputs": {"source_sentence": "q", "sentences": ["word " * 300]}, "truncate": False}, 422,
         "input 1 has 302 tokens"),
        ({"inputs": {"source_sentence": "q", "sentences": ["a"]}, "model": "tiny-reranker"}, 400,
         "it serves /rerank"),
    ],
)
def test_similarity_bad_requests(gateway, body, status, fragment):
    response = gateway.post("/similarity", body)
    assert response.status_code == status, response.text
    assert fragment in error_message(response)


def test_rerank_v2_is_cohere_v2_over_the_same_scores(gateway):
    body = {"query": "what is a fox", "documents": SENTENCES, "model": "tiny-reranker"}
    response = gateway.post("/v2/rerank", {**body, "top_n": 2})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"results", "id", "meta"}
    assert answer["meta"] == {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}}
    v1 = gateway.post("/v1/rerank", body).json()["results"]
    assert answer["results"] == [{"index": r["index"], "relevance_score": r["relevance_score"]} for r in v1[:2]]


def test_rerank_v2_max_tokens_per_doc_cuts_each_document_first(gateway):
    document = "paris london berlin tokyo the quick brown fox jumps over the lazy dog"  # 13 tokens
    body = {"query": "where", "documents": [document], "model": "tiny-reranker"}
    cut = gateway.post("/v2/rerank", {**body, "max_tokens_per_doc": 4}).json()["results"][0]["relevance_score"]
    first_four = gateway.post("/v2/rerank", {**body, "documents": ["paris london berlin tokyo"]}).json()
    assert cut == first_four["results"][0]["relevance_score"]
    assert cut != gateway.post("/v2/rerank", body).json()["results"][0]["relevance_score"]
    response = gateway.post("/v2/rerank", {**body, "max_tokens_per_doc": 4})
    assert int(response.headers["x-compute-tokens"]) == 1 + 1 + 2 + 4  # [CLS] where [SEP] + 4 + [SEP]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"query": "q", "documents": []}, 400, "`documents` must not be empty"),
        ({"query": "q", "documents": [{"text": "d"}]}, 422, "documents"),
        ({"query": "q", "documents": ["d"], "top_n": 0}, 422, "top_n"),
        ({"query": "q", "documents": ["d"], "max_tokens_per_doc": 0}, 422, "max_tokens_per_doc"),
        ({"query": "", "documents": ["d"]}, 400, "`query` item 0 is an empty"),
        ({"query": "q", "documents": ["d"], "model": "tiny-bert-mean"}, 400, "it serves /v1/embeddings"),
    ],
)
def test_rerank_v2_bad_requests(gateway, body, status, fragment):
    response = gateway.post("/v2/rerank", {"model": "tiny-reranker", **body})
    assert response.status_code == status, response.text
    assert fragment in error_message(response)


def test_ping_is_health(gateway):
    ping, health = gateway.get("/ping"), gateway.get("/health")
    assert ping.status_code == health.status_code == 200 and ping.json() == health.json()


@pytest.mark.parametrize(
    ("model", "body", "route"),
    [
        ("tiny-bert-mean", {"inputs": ["a", "b"]}, "/embed"),
        ("tiny-reranker", {"query": "q", "texts": ["a", "b"]}, "/rerank"),
        ("tiny-classifier", {"inputs": "a"}, "/predict"),
        ("tiny-ner", {"inputs": [["john lives in paris"]]}, "/predict_tokens"),
    ],
)
def test_invocations_answers_as_tei_for_the_task(gateway, model, body, route):
    response = gateway.post("/invocations", {**body, "model": model})
    assert response.status_code == 200, response.text
    assert response.json() == gateway.post(route, {**body, "model": model}).json()


def test_invocations_refuses_as_the_route_would(gateway):
    assert gateway.post("/invocations", {"inputs": []}).status_code == 400
    response = gateway.post("/invocations", {"input": "OpenAI's field, not TEI's"})
    assert response.status_code == 422 and "inputs" in error_message(response)
    assert gateway.post("/invocations", content=b"[1]", headers={"content-type": "application/json"}).status_code == 422


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/embed", {"inputs": ["tokenized inside triton", "twice"]}),
        ("/v2/embed", {"texts": ["tokenized inside triton"]}),
        ("/similarity", {"inputs": {"source_sentence": "a", "sentences": ["b"]}}),
        ("/v2/rerank", {"query": "q", "documents": ["a", "b"], "model": "tiny-reranker"}),
        ("/predict", {"inputs": "a", "model": "tiny-classifier"}),
        ("/predict_tokens", {"inputs": [["a"]], "model": "tiny-ner"}),
    ],
)
def test_tokenization_time_comes_from_the_tokenizer_step(gateway, path, body):
    headers = gateway.post(path, body).headers
    assert int(headers["x-tokenization-time"]) <= int(headers["x-inference-time"]) <= int(headers["x-total-time"])


def slowed(function, seconds: float):
    def slow(*args, **kwargs):
        time.sleep(seconds)
        return function(*args, **kwargs)

    return slow


def test_tokenization_time_is_what_the_tokenizer_step_measured(gateway, fake, monkeypatch):
    """A tokenizer made 60 ms slower shows in x-tokenization-time: the step's own measure reaches the header.
    Both lanes' tokenizers: the 70 inputs below are a bulk request."""
    for model in ("tiny-bert-mean_tokenizer", "tiny-bert-mean_tokenizer_bulk"):
        tokenizer = fake.models[model].instance.stage.tokenizer
        monkeypatch.setattr(tokenizer, "encode", slowed(tokenizer.encode, 0.06))
    headers = gateway.post("/embed", {"inputs": ["slow to tokenize"], "model": "tiny-bert-mean"}).headers
    assert 60 <= int(headers["x-tokenization-time"]) <= int(headers["x-inference-time"])
    split = gateway.post("/embed", {"inputs": ["x"] * 70, "model": "tiny-bert-mean"}).headers  # 3 sub-requests
    assert int(split["x-tokenization-time"]) >= 180  # concurrent steps: the sum of their times


NEW_ROUTES = {("post", "/similarity"): "TEI", ("post", "/embed_all"): "TEI", ("post", "/embed_sparse"): "TEI",
              ("post", "/v2/embed"): "Cohere", ("post", "/v2/rerank"): "Cohere", ("get", "/ping"): "SageMaker",
              ("post", "/invocations"): "SageMaker"}


def test_openapi_documents_the_new_routes_and_their_errors(gateway):
    paths = gateway.get("/openapi.json").json()["paths"]
    for (method, path), tag in NEW_ROUTES.items():
        operation = paths[path][method]
        assert operation["tags"] == [tag], path
        statuses = set(operation["responses"])
        assert ({"400", "413", "422", "424", "429", "503"} if method == "post" else {"503"}) <= statuses, path
    assert "401" not in paths["/ping"]["get"]["responses"]  # open, as /health


@pytest.mark.parametrize(("page", "header"), [("docs/http-api.md", "| route | request | answer |"),
                                              ("README.md", "| route | follows | answers |")])
def test_the_route_tables_list_every_route(gateway, page, header):
    """Every operation of /openapi.json has its row in the HTTP API page's route table and the README's routes at
    a glance, and no row is stale."""
    import re
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[2] / page).read_text().splitlines()
    start = lines.index(header) + 2
    rows = set()
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows |= {(method.lower(), path) for method, path in re.findall(r"`(GET|POST) (/[^`]*)`", line.split("|")[1])}
    served = {(method, path) for path, item in gateway.get("/openapi.json").json()["paths"].items()
              for method in item}
    assert served <= rows, sorted(served - rows)
    assert rows - {("get", "/openapi.json")} <= served, sorted(rows - served)  # the document itself is not in it
