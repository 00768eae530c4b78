"""The served models' own tokenizers, read in the gateway for `/tokenize` and `/decode`.

Inference never needs them here (the Triton ensemble tokenizes); they are loaded on first use from
the built repositories the gateway was given (`<repository>/<name>_tokenizer/1/tokenizer.json`),
the very file Triton's tokenizer step reads.
"""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.errors import ApiError, ErrorKind
from trident.model_names import step_files
from trident.spec import ModelSpec
from trident.tokenization import TextTokenizer


def tokenizer_file(repository: Path, model: str) -> Path:
    return step_files(repository, model, "tokenizer") / "tokenizer.json"


class TokenizerStore:
    def __init__(self, repositories: list[Path]) -> None:
        self.repositories = list(repositories)
        self._loaded: dict[str, TextTokenizer] = {}
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec) -> TextTokenizer:
        with self._lock:  # loading happens in worker threads; load each tokenizer once
            if spec.name not in self._loaded:
                self._loaded[spec.name] = self._load(spec)
            return self._loaded[spec.name]

    def _load(self, spec: ModelSpec) -> TextTokenizer:
        for repository in self.repositories:
            path = tokenizer_file(repository, spec.name)
            if path.is_file():
                return TextTokenizer(path, spec.max_length, spec.pad_token_id)
        raise ApiError(ErrorKind.NOT_IMPLEMENTED, f"the gateway has no tokenizer file for {spec.name}: with "
                       "--triton-url, also pass the model's built repository with --repository so /tokenize and "
                       "/decode can read it")
