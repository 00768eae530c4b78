"""Tokenization with the model's own fast tokenizer (`tokenizer.json`), shared by the Triton
tokenizer model and the gateway's `/tokenize`.

Texts are encoded once with truncation at the model's maximum; an encoding that overflowed was
too long. Only then, and only for an input that must not be truncated, is it re-encoded whole to
report its true token count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from trident.errors import InputTooLongError

__all__ = ["InputTooLongError", "TextTokenizer", "TokenBatch"]


@dataclass
class TokenBatch:
    """Token ids of a batch, right-padded for transport; `lengths` gives each row's real length."""

    input_ids: np.ndarray  # int64 [n, longest]
    token_type_ids: np.ndarray  # int64 [n, longest]
    lengths: np.ndarray  # int32 [n]
    encodings: list[Encoding]

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """Per token, its character span in the text (int32 [n, longest, 2]) and its word index
        (int32 [n, longest]; -1 for special tokens and padding): what NER needs to find words."""
        n, longest = self.input_ids.shape
        offsets = np.zeros((n, longest, 2), dtype=np.int32)
        word_ids = np.full((n, longest), -1, dtype=np.int32)
        for row, encoding in enumerate(self.encodings):
            length = len(encoding.ids)
            if length:
                offsets[row, :length] = encoding.offsets
                words = [-1 if special or word is None else word
                         for word, special in zip(encoding.word_ids, encoding.special_tokens_mask, strict=True)]
                word_ids[row, :length] = words
        return offsets, word_ids


class TextTokenizer:
    def __init__(self, tokenizer_file: Path, max_length: int, pad_id: int | None = None) -> None:
        self.max_length = max_length
        self._whole = Tokenizer.from_file(str(tokenizer_file))
        self._whole.no_padding()
        self._whole.no_truncation()
        self._truncating = {
            direction: self._truncating_copy(tokenizer_file, direction) for direction in ("right", "left")
        }
        self.pad_id = pad_id if pad_id is not None else self._guess_pad_id()

    def _truncating_copy(self, tokenizer_file: Path, direction: str) -> Tokenizer:
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_padding()
        tokenizer.enable_truncation(self.max_length, direction=direction)
        return tokenizer

    def _guess_pad_id(self) -> int:
        for token in ("[PAD]", "<pad>", "<|endoftext|>", "<|end_of_text|>", "</s>"):
            token_id = self._whole.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def encode(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        truncate: list[bool] | None = None,
        left: list[bool] | None = None,
    ) -> TokenBatch:
        """Encode texts (or text pairs); per-input `truncate` and `left` (truncation side).

        Raises InputTooLongError for the first input too long that may not be truncated.
        """
        n = len(texts)
        truncate = truncate if truncate is not None else [True] * n
        left = left if left is not None else [False] * n
        items = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encodings: list[Encoding | None] = [None] * n
        for direction in ("right", "left"):
            wanted = [i for i in range(n) if left[i] == (direction == "left")]
            if wanted:
                encoded = self._truncating[direction].encode_batch([items[i] for i in wanted])
                for i, encoding in zip(wanted, encoded, strict=True):
                    encodings[i] = encoding
        for i, encoding in enumerate(encodings):
            if encoding.overflowing and not truncate[i]:
                whole = self._whole.encode(*items[i]) if pairs is not None else self._whole.encode(items[i])
                raise InputTooLongError(i, len(whole.ids), self.max_length)
        return self._pack(encodings)

    def _pack(self, encodings: list[Encoding]) -> TokenBatch:
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
        longest = int(lengths.max()) if len(encodings) else 0
        input_ids = np.full((len(encodings), longest), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(encodings), longest), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, : lengths[row]] = encoding.ids
            token_type_ids[row, : lengths[row]] = encoding.type_ids
        return TokenBatch(input_ids, token_type_ids, lengths, encodings)

    def count_tokens(self, text: str) -> int:
        return len(self._whole.encode(text).ids)

    def tokenize(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return self._whole.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._whole.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self._whole.get_vocab_size(with_added_tokens=True)
