"""Locust users for Trident: embeddings with realistic input lengths.

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --headless -u 16 -r 4 -t 60s

Environment: TRIDENT_MODEL (model name sent, default all-MiniLM-L6-v2), TRIDENT_API_KEY (optional).
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
