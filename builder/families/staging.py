"""Writing a converted checkpoint: what every family's conversion shares.

A converted folder holds the native config.json, the weights (renamed into model.safetensors, or linked
when only the config changed), and the files beside them the builder reads as they are: the tokenizer's
and sentence-transformers' (modules.json and each module's folder, the prompts). Code files are never
copied: nothing in the converted folder can ask for remote code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from builder.errors import BuildError

# Top-level files the builder reads besides config.json: the tokenizer's and sentence-transformers'.
SIDE_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")
WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")
Weights = dict[str, Tensor]


def read_config(folder: Path) -> dict[str, Any]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BuildError(f"{folder}/config.json cannot be read: {exc}") from None
    if not isinstance(config, dict):
        raise BuildError(f"{folder}/config.json is not an object")
    return config


def write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def copy_side_files(source: Path, dest: Path) -> None:
    """The tokenizer and sentence-transformers files, and the module folders modules.json names.

    tokenizer_config.json loses its auto_map: the fast tokenizer is all Trident serves, and a
    tokenizer class from the checkpoint's code must not be asked for when the builder loads it."""
    dest.mkdir(parents=True, exist_ok=True)
    for file in sorted(source.iterdir()):
        if file.is_file() and file.suffix in SIDE_SUFFIXES and not _is_config_or_index(file):
            shutil.copyfile(file, dest / file.name)
    for module_dir in _module_folders(source):
        shutil.copytree(source / module_dir, dest / module_dir, dirs_exist_ok=True)
    tokenizer_config = dest / "tokenizer_config.json"
    if tokenizer_config.is_file():
        settings = json.loads(tokenizer_config.read_text())
        if isinstance(settings, dict) and settings.pop("auto_map", None) is not None:
            tokenizer_config.write_text(json.dumps(settings, indent=2) + "\n")


def _is_config_or_index(file: Path) -> bool:
    return file.name == "config.json" or file.name.endswith(".index.json")


def _module_folders(source: Path) -> list[str]:
    modules_file = source / "modules.json"
    if not modules_file.is_file():
        return []
    modules = json.loads(modules_file.read_text())
    return [str(m["path"]) for m in modules if m.get("path") and (source / str(m["path"])).is_dir()]


def link_weights(source: Path, dest: Path) -> None:
    """The weights as they are (symlinks: an 8B checkpoint is not copied when only its config changes)."""
    found = False
    for pattern in WEIGHT_PATTERNS:
        for file in sorted(source.glob(pattern)):
            (dest / file.name).symlink_to(file.resolve())
            found = True
    if not found:
        raise BuildError(f"{source} has no *.safetensors or pytorch_model*.bin weights")


def read_weights(source: Path) -> Weights:
    """Every tensor of the checkpoint, by its published name (one file, shards, or pytorch_model.bin)."""
    from safetensors.torch import load_file

    files = sorted(source.glob("*.safetensors"))
    if files:
        weights: Weights = {}
        for file in files:
            weights.update(load_file(str(file)))
        return weights
    bins = sorted(source.glob("pytorch_model*.bin"))
    if not bins:
        raise BuildError(f"{source} has no *.safetensors or pytorch_model*.bin weights")
    weights = {}
    for file in bins:
        weights.update(torch.load(file, map_location="cpu", weights_only=True))
    return weights


def write_weights(dest: Path, weights: Weights) -> None:
    from safetensors.torch import save_file

    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, str(dest / "model.safetensors"),
              metadata={"format": "pt"})


def strip_prefix(weights: Weights, prefixes: tuple[str, ...]) -> Weights:
    """Names without the first of `prefixes` they start with (published checkpoints vary: `bert.`, `new.`)."""
    stripped = {}
    for name, tensor in weights.items():
        for prefix in prefixes:
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        stripped[name] = tensor
    return stripped


def require(config: dict[str, Any], key: str, expected: object, family: str) -> None:
    """A published setting Trident's conversion does not reproduce: refuse rather than serve another model."""
    value = config.get(key, expected)
    if value != expected:
        raise BuildError(f"{family}: config.json has {key}={value!r}; Trident serves only {key}={expected!r}")


def check_names(folder: Path, weights: Weights, family: str, auto_class: str = "AutoModel") -> None:
    """The converted names are exactly the native class's: transformers would only warn about a missing
    weight and leave it random."""
    import transformers

    from trident.models import register

    register()
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    with torch.device("meta"):
        model = getattr(transformers, auto_class).from_config(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise BuildError(f"{family}: the converted weights do not fit {type(model).__name__}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
