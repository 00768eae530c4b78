"""Finding the checkpoint: a local folder, or a Hugging Face hub id when the hub can be reached."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from builder.errors import BuildError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HASHED_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin", ".py", ".tiktoken")


def resolve_checkpoint(model: str, revision: str | None = None) -> Path:
    """A local folder as is; a hub id downloaded (or taken from the local HF cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BuildError(f"{path} has no config.json: it is not a Hugging Face checkpoint folder")
        return path.resolve()
    if path.exists():
        raise BuildError(f"{model} is a file; pass the checkpoint's folder")
    if not HUB_ID.match(model):
        raise BuildError(f"{model!r} is neither a local folder nor a Hugging Face hub id (owner/name)")
    return _download(model, revision)


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as exc:  # any failure to reach the hub ends the same way for the user
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BuildError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({reason}). "
            "On a machine without hub access, download the checkpoint elsewhere and pass its local folder."
        ) from None


def content_hash(model_dir: Path) -> str:
    """sha256 over the files that define the model (weights, configs, tokenizer), in name order."""
    digest = hashlib.sha256()
    for file in sorted(model_dir.rglob("*")):
        if file.is_file() and file.suffix in HASHED_SUFFIXES and not _hidden(file, model_dir):
            digest.update(str(file.relative_to(model_dir)).encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)
