"""The engine table (trident/engines/__init__.py): every row names modules that exist, the CLI offers exactly
its rows, the repository writer and the config checks read it, and no code outside it compares engine names."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from builder.config_file import check_settings
from builder.errors import BuildError
from builder.repository import GPU_ENGINE_QUEUE_DELAY_US, queue_delay_us
from cli.main import parser
from trident.engines import DEFAULT_ENGINE, ENGINE_NAMES, ENGINES, engine_kind
from trident.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_each_row_names_a_loader_and_a_builder_that_exist(name):
    kind = engine_kind(name)
    assert kind.device in ("cpu", "gpu") and kind.instances >= 1
    assert callable(importlib.import_module(kind.runtime).load)
    assert callable(kind.build_function())


def test_the_cli_offers_the_rows_and_defaults_to_the_cpu_engine():
    build = parser().parse_args(["build", "m", "--out", "o"])
    assert build.engine == DEFAULT_ENGINE and not ENGINES[DEFAULT_ENGINE].gpu
    for name in ENGINE_NAMES:
        assert parser().parse_args(["serve", "--engine", name]).engine == name
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--engine", "nope"])
    with pytest.raises(ValueError, match="onnxruntime, torch, tensorrt"):
        engine_kind("nope")


def test_gpu_rows_wait_for_fuller_batches_and_only_the_cpu_variants_take_int8():
    spec = ModelSpec(name="m", task="embedding", architecture="BertModel", model_type="bert", max_length=8, dim=4)
    for kind in ENGINES.values():
        spec.engine = kind.name
        assert queue_delay_us(spec, "engine") == (GPU_ENGINE_QUEUE_DELAY_US if kind.gpu else 0)
        assert queue_delay_us(spec, "tokenizer") == 0
        if not kind.cpu_variants:
            with pytest.raises(BuildError, match="no int8 path"):
                check_settings(spec, None, "int8", None, kind.name)


def test_no_engine_name_is_compared_outside_the_table():
    pattern = re.compile(r"""engine\s*[!=]=\s*["']""")
    found = [f"{path.relative_to(ROOT)}:{number}" for folder in ("builder", "trident", "gateway", "cli")
             for path in (ROOT / folder).rglob("*.py") if "engines" not in path.relative_to(ROOT).parts[:2]
             for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found
