"""Locust users for Trident: embeddings, rerank and predict, with realistic input lengths.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --headless -u 16 -r 4 -t 60s

Environment: TRIDENT_MODEL (embedding model, default all-MiniLM-L6-v2), TRIDENT_RERANK_MODEL and
TRIDENT_PREDICT_MODEL (their users run only when set: `make loadtest` serves such models),
TRIDENT_API_KEY (optional).
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

WORDS = (
    "search vector model server triton token batch embedding fast text query document "
    "retrieval ranking relevant passage answer question neural network inference latency "
    "throughput"
).split()
MODEL = os.environ.get("TRIDENT_MODEL", "all-MiniLM-L6-v2")
RERANK_MODEL = os.environ.get("TRIDENT_RERANK_MODEL")
PREDICT_MODEL = os.environ.get("TRIDENT_PREDICT_MODEL")
HEADERS = {"Authorization": f"Bearer {os.environ['TRIDENT_API_KEY']}"} if os.environ.get("TRIDENT_API_KEY") else {}


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


class EmbeddingUser(HttpUser):
    """Mostly short queries, sometimes a batch of passages, as a RAG ingest + query mix does."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task(8)
    def query(self) -> None:
        body = {"input": sentence(self.rng, self.rng.randint(3, 15)), "model": MODEL}
        self.client.post("/v1/embeddings", json=body, headers=HEADERS, name="/v1/embeddings [query]")

    @task(2)
    def passages(self) -> None:
        texts = [sentence(self.rng, self.rng.randint(50, 300)) for _ in range(16)]
        self.client.post("/v1/embeddings", json={"input": texts, "model": MODEL}, headers=HEADERS,
                         name="/v1/embeddings [16 passages]")


class RerankUser(HttpUser):
    """A search query against the top 20 passages of a first-stage retriever."""

    wait_time = between(0.0, 0.05)
    abstract = RERANK_MODEL is None  # Locust skips abstract users

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def rerank(self) -> None:
        body = {"query": sentence(self.rng, self.rng.randint(4, 12)), "model": RERANK_MODEL, "truncate": True,
                "texts": [sentence(self.rng, self.rng.randint(40, 120)) for _ in range(20)]}
        self.client.post("/rerank", json=body, headers=HEADERS, name="/rerank [query + 20 passages]")


class PredictUser(HttpUser):
    """Moderation-style classification of short user messages, one or a few at a time."""

    wait_time = between(0.0, 0.05)
    abstract = PREDICT_MODEL is None

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def predict(self) -> None:
        inputs = [[sentence(self.rng, self.rng.randint(5, 40))] for _ in range(self.rng.randint(1, 4))]
        self.client.post("/predict", json={"inputs": inputs, "model": PREDICT_MODEL}, headers=HEADERS,
                         name="/predict [1-4 messages]")
