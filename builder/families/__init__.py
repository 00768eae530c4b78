"""Checkpoints as they are published on the hub, whose own layout needs code Trident never runs.

A family recognises its checkpoints from config.json (model_type, architectures, auto_map and its own
keys) and writes the same model, bit for bit the same weights, in the layout of a class transformers
runs natively (or of Trident's own module where transformers has none). The builder then inspects,
exports and checks that converted folder like any other checkpoint; the content hash and the source in
the manifest stay the published folder's.

Every family module defines FAMILY. Checkpoints no family recognises go through unchanged, so code
shipped with them is still refused without --trust-remote-code.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.families.staging import read_config

Progress = Callable[[str], None]
# Written into a converted folder: the ModelSpec fields its family adds (an LLM reranker's prompt, the LoRA
# adapters), which the builder's inspection reads (`spec_fields`).
SPEC_FILE = "trident_spec.json"


@dataclass(frozen=True)
class Published:
    """A checkpoint folder as downloaded, and what the build asked of it."""

    folder: Path
    config: dict[str, Any]
    task: str | None = None  # --task, or the task the YAML's default route implies


@dataclass(frozen=True)
class Family:
    name: str  # what the build says it recognised
    native: str  # what it converts to
    matches: Callable[[Published], bool]
    convert: Callable[[Published, Path], None]  # writes the converted checkpoint into the (empty) folder


def families() -> tuple[Family, ...]:
    from builder.families import bidirectional, gte, jina_bert, jina_v3, llm_reranker, nomic

    return (bidirectional.FAMILY, nomic.FAMILY, gte.FAMILY, jina_bert.FAMILY, jina_v3.FAMILY, llm_reranker.FAMILY)


def recognise(published: Published) -> Family | None:
    return next((family for family in families() if family.matches(published)), None)


@contextlib.contextmanager
def native_checkpoint(model_dir: Path, task: str | None, workdir: Path, progress: Progress) -> Iterator[Path]:
    """`model_dir` itself, or (for a recognised family) its converted copy in a temporary folder of `workdir`."""
    published = Published(model_dir, read_config(model_dir), task)
    family = recognise(published)
    if family is None:
        yield model_dir
        return
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".trident-native-", dir=workdir) as staging:
        progress(f"{model_dir.name} is {family.name} in its published layout: converting it to {family.native}")
        family.convert(published, Path(staging))
        yield Path(staging)


def write_spec_fields(folder: Path, fields: dict[str, Any]) -> None:
    (folder / SPEC_FILE).write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")


def spec_fields(model_dir: Path) -> dict[str, Any]:
    """The ModelSpec fields a converted folder's family wrote; none for any other checkpoint."""
    path = model_dir / SPEC_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
