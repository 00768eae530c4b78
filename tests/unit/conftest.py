"""The fast tier's fixtures: tiny models of every task served by the fake Triton (testkit.fake_triton),
and the real gateway in front of it (uvicorn in a thread, on a free loopback port), no tritonserver.

The models are tiny random checkpoints read by the real builder (`inspect_checkpoint`, `save_tokenizer`)
and written by the real repository writer without an engine file: nothing is exported, nothing cached.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from builder.inspect import inspect_checkpoint, save_tokenizer
from builder.repository import write_repository
from gateway.logs import JsonFormatter
from gateway.settings import GatewaySettings
from testkit.factories import make_tiny_bert
from testkit.fake_triton import FakeTriton
from testkit.gateway_server import GatewayServer

DEFAULT_MODEL = "tiny-bert-mean"
# name -> make_tiny_bert arguments: two embedders (dim 32, max length 128), a reranker, a classifier, NER.
MODELS = {
    "tiny-bert-mean": {"pooling": "mean", "normalize": True, "seed": 1},
    "tiny-bert-cls": {"pooling": "cls"},
    "tiny-reranker": {"head": "seq-cls", "num_labels": 1, "seed": 2},
    "tiny-classifier": {"head": "seq-cls", "num_labels": 3, "seed": 3},
    "tiny-ner": {"head": "token-cls", "seed": 4},
}


@pytest.fixture(scope="session")
def unit_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unit-models")
    repository = root / "repository"
    for name, options in MODELS.items():
        checkpoint = make_tiny_bert(root / name, **options)
        spec = inspect_checkpoint(checkpoint, name)
        spec.content_hash = f"{name}-hash"
        save_tokenizer(checkpoint, root / f"{name}.tokenizer.json")
        write_repository(spec, repository, None, root / f"{name}.tokenizer.json", engine_files={})
    return repository


@pytest.fixture(scope="session")
def fake_triton_server(unit_repository: Path) -> Iterator[FakeTriton]:
    # tiny-bert-cls's fake engine has a 300-row table (the manifest says 503): ids 300..502 pass the
    # gateway's vocabulary check and fail inside the engine, the 424 path.
    with FakeTriton([unit_repository], engine_rows={"tiny-bert-cls": 300}) as fake:
        yield fake


@pytest.fixture
def fake(fake_triton_server: FakeTriton) -> Iterator[FakeTriton]:
    """The shared fake, left as it was found: faults cleared, nothing hung, ready, serving."""
    yield fake_triton_server
    fake_triton_server.clear()
    if fake_triton_server._loop is None:
        fake_triton_server.start()


def settings_for(fake: FakeTriton, repository: Path, **overrides) -> GatewaySettings:
    return GatewaySettings(triton_urls=[fake.url], repositories=[repository], default_model=DEFAULT_MODEL,
                           **overrides)


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
    """What the gateway logs during the test, one JSON object per line (the `trident serve` format)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("trident")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
