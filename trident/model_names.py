"""The Triton model names of one served model called `<name>`, written once. The repository writer gives these
names, the gateway calls them, the engine step of a TensorRT build calls the plan, tests and bench read files:

    <name>            ensemble: text in
    <name>_ids        ensemble: token ids in (tasks whose row allows them)
    <name>_tokens     ensemble: token embeddings out (embedding models, /embed_all)
    <name>_<step>     the Python-backend steps: _tokenizer, _ids_input, _engine, _postprocess
    <name>_hybrid_<kinds>  ensemble of a hybrid (BGE-M3) model answering those of its outputs (sparse, colbert...)
    <name>_trt        a TensorRT plan, which the engine step calls (`--engine tensorrt`)
    <model>_bulk      the bulk lane's twin of a step or an ensemble (trident/priorities.py)
"""

from __future__ import annotations

from pathlib import Path

from trident.tasks import hybrid_kinds

# The steps' roles (builder.repository.Step.role) -> their model name's suffix. The ids step is `_ids_input`:
# `<name>_ids` is the ensemble that it starts.
STEP_SUFFIXES = {"tokenizer": "_tokenizer", "ids": "_ids_input", "engine": "_engine", "postprocess": "_postprocess"}
VERSION = "1"  # every model has one version folder


def ids_model(name: str) -> str:
    return f"{name}_ids"


def tokens_model(name: str) -> str:
    return f"{name}_tokens"


def step_model(name: str, role: str) -> str:
    return name + STEP_SUFFIXES[role]


def hybrid_model(name: str, kinds: tuple[str, ...] | list[str]) -> str:
    """The ensemble of a hybrid model answering `kinds` of its outputs (the dense one alone is `<name>` itself)."""
    kinds = hybrid_kinds(kinds)
    return name if kinds == ("dense",) else f"{name}_hybrid_{'_'.join(kinds)}"


def plan_model(name: str) -> str:
    return f"{name}_trt"


def bulk_twin(model: str) -> str:
    """The bulk lane's name for a step or an ensemble."""
    return f"{model}_bulk"


def step_files(repository: Path, name: str, role: str) -> Path:
    """The version folder of one step in a built repository: its model.py and the files it loads."""
    return repository / step_model(name, role) / VERSION
