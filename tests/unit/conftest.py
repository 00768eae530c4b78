"""The fast tier's fixtures: tiny models of every task served by the fake Triton (testkit.fake_triton),
and the real gateway in front of it (uvicorn in a thread, on a free loopback port), no tritonserver.

The models are tiny random checkpoints read by the real builder (`inspect_checkpoint`, `save_tokenizer`)
and written by the real repository writer without an engine file: nothing is exported, nothing cached.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.inspect import inspect_checkpoint, save_tokenizer
from builder.repository import write_repository
from gateway.logs import JsonFormatter
from gateway.settings import GatewaySettings
from testkit.factories import make_tiny_bert, make_tiny_colbert, make_tiny_splade
from testkit.fake_triton import FakeTriton
from testkit.gateway_server import GatewayServer
from testkit.published import make_bge_m3

DEFAULT_MODEL = "tiny-bert-mean"
# name -> make_tiny_bert arguments: two embedders (dim 32, max length 128), a reranker, a classifier, NER.
MODELS = {
    "tiny-bert-mean": {"pooling": "mean", "normalize": True, "seed": 1},
    "tiny-bert-cls": {"pooling": "cls"},
    "tiny-reranker": {"head": "seq-cls", "num_labels": 1, "seed": 2},
    "tiny-classifier": {"head": "seq-cls", "num_labels": 3, "seed": 3},
    "tiny-ner": {"head": "token-cls", "seed": 4},
}
SPARSE_MODELS = {"tiny-splade": {"seed": 5}}  # make_tiny_splade arguments: a SPLADE model (vocabulary ~500)
MULTI_VECTOR_MODELS = {"tiny-colbert": {"seed": 6}}  # make_tiny_colbert arguments: queries expanded to 12 tokens
HYBRID_MODELS = {"tiny-bge-m3": {"seed": 7}}  # make_bge_m3 arguments: FlagEmbedding's BGE-M3 layout, XLM-RoBERTa
# tiny-bert-cls's manifest claims a vocabulary of 100,000 ids while its engine's table has the checkpoint's
# ~500 rows: text is unaffected (the tokenizer only makes real ids), but ids past the table pass the
# gateway's vocabulary check and fail inside the engine, a real engine failure (the 424 path).
CLAIMED_VOCABULARY = {"tiny-bert-cls": 100_000}
# What the builder measures at build time (builder.calibration), set by hand here where nothing is built:
# int8 / uint8 ranges for tiny-bert-mean (a little different per dimension), Cohere-style prompts for
# tiny-bert-cls (its input_type mapping).
QUANTIZATION_RANGES = {"tiny-bert-mean": [[-0.3 - 0.01 * i for i in range(32)], [0.3 + 0.01 * i for i in range(32)]]}
PROMPTS = {"tiny-bert-cls": {"query": "query: ", "document": "passage: "}}


@pytest.fixture(scope="session")
def unit_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> a tiny random checkpoint (its tokenizer is the reference for /tokenize and /decode)."""
    root = tmp_path_factory.mktemp("unit-checkpoints")
    return {**{name: make_tiny_bert(root / name, **options) for name, options in MODELS.items()},
            **{name: make_tiny_splade(root / name, **options) for name, options in SPARSE_MODELS.items()},
            **{name: make_tiny_colbert(root / name, **options) for name, options in MULTI_VECTOR_MODELS.items()},
            **{name: make_bge_m3(root / name, **options) for name, options in HYBRID_MODELS.items()}}


@pytest.fixture(scope="session")
def unit_repository(unit_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Triton repository of every MODELS entry, as the builder writes it, minus the engine file."""
    root = tmp_path_factory.mktemp("unit-models")
    repository = root / "repository"
    for name, checkpoint in unit_checkpoints.items():
        spec = inspect_checkpoint(checkpoint, name)
        spec.content_hash = f"{name}-hash"
        spec.vocab_size = CLAIMED_VOCABULARY.get(name, spec.vocab_size)
        spec.quantization_ranges = QUANTIZATION_RANGES.get(name, [])
        spec.prompts = PROMPTS.get(name, spec.prompts)
        save_tokenizer(checkpoint, root / f"{name}.tokenizer.json")
        write_repository(spec, repository, root / f"{name}.tokenizer.json", engine_files={})
    return repository


@pytest.fixture(scope="session")
def fake_triton_server(unit_checkpoints: dict[str, Path], unit_repository: Path) -> Iterator[FakeTriton]:
    real_rows = {name: json.loads((unit_checkpoints[name] / "config.json").read_text())["vocab_size"]
                 for name in CLAIMED_VOCABULARY}
    with FakeTriton([unit_repository], engine_rows=real_rows) as fake:
        yield fake


@pytest.fixture
def fake(fake_triton_server: FakeTriton) -> Iterator[FakeTriton]:
    """The shared fake, left as it was found: faults cleared, nothing hung, ready, serving."""
    yield fake_triton_server
    fake_triton_server.clear()
    if fake_triton_server._loop is None:
        fake_triton_server.start()


def settings_for(fake: FakeTriton, repository: Path, **overrides) -> GatewaySettings:
    """`trident serve --triton-url FAKE --repository REPO --default-model tiny-bert-mean --cache-size 0`, plus
    `overrides`. No response cache unless a test asks for one: a test's inputs reach the model, whatever other
    tests sent before (tests/unit/test_response_cache.py is the cache's own)."""
    return GatewaySettings(**{"triton_urls": [fake.url], "repositories": [repository],
                              "default_model": DEFAULT_MODEL, "cache_size_mib": 0, **overrides})


@pytest.fixture(scope="session")
def gateway(fake_triton_server: FakeTriton, unit_repository: Path) -> Iterator[GatewayServer]:
    """The gateway with `trident serve`'s defaults, shared by the tests that change nothing."""
    server = GatewayServer(settings_for(fake_triton_server, unit_repository)).start()
    yield server
    server.stop()


@pytest.fixture
def make_gateway(fake: FakeTriton, unit_repository: Path) -> Iterator[Callable[..., GatewayServer]]:
    """A gateway of its own with some settings changed (`make_gateway(api_key="k")`), stopped after the test."""
    started: list[GatewayServer] = []

    def make(healthy: bool = True, **overrides) -> GatewayServer:
        server = GatewayServer(settings_for(fake, unit_repository, **overrides)).start(healthy)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def gateway_log() -> Iterator[io.StringIO]:
    """Everything logged during the test, one JSON object per line: `trident serve`'s root handler, with
    Trident's loggers at INFO (gateway.logs.configure_logging)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root, trident = logging.getLogger(), logging.getLogger("trident")
    level = trident.level
    root.addHandler(handler)
    trident.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        trident.setLevel(level)
