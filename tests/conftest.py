"""Shared fixtures: models built once per session (cached by content hash) and one real stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.factories import make_tiny_bert
from testkit.stack import Stack

ROOT = Path(__file__).resolve().parent.parent
# Builds are keyed by the checkpoint's content hash: reruns reuse them, a fresh clone builds them.
os.environ.setdefault("TRIDENT_HOME", str(ROOT / ".trident" / "test-home"))
# The suite holds engines to float32 parity with transformers (1e-4), so its builds default to ONNX Runtime
# float32; tests/test_precision.py asks for `auto` and the other variants itself.
os.environ.setdefault("TRIDENT_PRECISION", "onnxruntime-fp32")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from cli.models import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "tiny-bert-cls": make_tiny_bert(root / "tiny-bert-cls", pooling="cls"),
        "tiny-bert-mean": make_tiny_bert(root / "tiny-bert-mean", pooling="mean", normalize=True, seed=1),
    }


@pytest.fixture(scope="session")
def embedding_repositories(minilm_dir: Path, tiny_models: dict[str, Path]) -> dict[str, Path]:
    """name -> built repository folder, through the same path `trident serve --model` takes."""
    from cli.main import _build_options, parser
    from cli.serve import ModelArg, prepare_model

    # The CLI's own defaults, so that `trident serve --model PATH` in a test reuses these builds.
    options = _build_options(parser().parse_args(["serve"]))
    models = {"all-MiniLM-L6-v2": minilm_dir, **tiny_models}
    return {name: prepare_model(ModelArg(str(path), name), options, progress=lambda _: None)
            for name, path in models.items()}


@pytest.fixture(scope="session")
def stack(embedding_repositories: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    args = [arg for repo in embedding_repositories.values() for arg in ("--repository", str(repo))]
    args += ["--default-model", "all-MiniLM-L6-v2"]
    server = Stack(args, tmp_path_factory.mktemp("stack") / "serve.log").start()
    yield server
    server.stop()
