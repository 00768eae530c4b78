"""Gateway settings: every limit and default in one place, set from `trident serve` flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class GatewaySettings:
    triton_urls: list[str] = field(default_factory=lambda: ["127.0.0.1:8001"])
    max_client_batch_size: int = 2048  # inputs per HTTP request (OpenAI's limit)
    triton_batch_size: int = 32  # inputs per Triton sub-request; Triton's dynamic batcher merges them
    max_payload_bytes: int = 2 * 1024 * 1024
    max_concurrent_requests: int = 512
    request_timeout_s: float = 60.0  # deadline of every Triton call
    auto_truncate: bool = False  # TEI routes' default for `truncate`; /v1/embeddings always truncates
    # The default of the embedding routes' `chunk_long_inputs` on mean-pooled models (trident.spans): inputs past
    # the maximum embedded in windows instead of cut or refused.
    chunk_long_inputs: bool = False
    api_key: str | None = None
    default_model: str | None = None
    triton_metrics_url: str | None = None  # Triton's Prometheus endpoint, appended to GET /metrics
    repositories: list[Path] = field(default_factory=list)  # built repositories: tokenizers for /tokenize
    # The `--id` of the tritonserver `trident serve` started: readiness requires that server, so another
    # Triton that happens to hold the port is never taken for ours. None with --triton-url.
    triton_server_id: str | None = None
    bulk_threshold: int = 8  # a request with more inputs than this, and no priority of its own, is bulk
    cache_size_mib: float = 64.0  # the response cache, all workers together; 0: none
    workers: int = 1  # gateway processes sharing the cache size
