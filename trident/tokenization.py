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

    def rows(self, start: int, end: int) -> TokenBatch:
        """Rows [start, end) as a batch of their own, padded only to their own longest."""
        lengths = self.lengths[start:end]
        longest = int(lengths.max()) if len(lengths) else 0
        return TokenBatch(self.input_ids[start:end, :longest], self.token_type_ids[start:end, :longest], lengths,
                          self.encodings[start:end])

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
        max_tokens: list[int] | None = None,
    ) -> TokenBatch:
        """Encode texts (or text pairs); per-input `truncate`, `left` (truncation side) and `max_tokens`
        (0: the model's maximum; else at most that many tokens per text, or per document of a pair).

        Raises InputTooLongError for the first input too long that may not be truncated.
        """
        n = len(texts)
        truncate = truncate if truncate is not None else [True] * n
        left = left if left is not None else [False] * n
        limits = [self._cap(m) for m in max_tokens] if max_tokens is not None else [None] * n
        items = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        encodings: list[Encoding | None] = [None] * n
        for direction in ("right", "left"):
            wanted = [i for i in range(n) if left[i] == (direction == "left") and limits[i] is None]
            if wanted:
                encoded = self._truncating[direction].encode_batch([items[i] for i in wanted])
                for i, encoding in zip(wanted, encoded, strict=True):
                    encodings[i] = encoding
        too_long: list[int | None] = [None] * n  # the whole token count of an input that may not be cut
        for i in range(n):
            if limits[i] is not None:
                encodings[i], too_long[i] = self._encode_capped(items[i], pairs is not None, limits[i], left[i])
            elif not truncate[i] and encodings[i].overflowing:  # truncated anyway: its whole count is not needed
                whole = self._whole.encode(*items[i]) if pairs is not None else self._whole.encode(items[i])
                too_long[i] = len(whole.ids)
        for i in range(n):
            if too_long[i] is not None and not truncate[i]:
                limit = limits[i] if limits[i] is not None and pairs is None else self.max_length
                raise InputTooLongError(i, too_long[i], limit)
        return self._pack(encodings)

    def _cap(self, max_tokens: int) -> int | None:
        """A per-input cap below the model's maximum, or None (0, or at least the maximum: no cap of its own)."""
        if max_tokens < 0:
            raise ValueError(f"MAX_TOKENS must be 0 (the model's maximum) or positive, got {max_tokens}")
        return max_tokens if 0 < max_tokens < self.max_length else None

    def _encode_capped(self, item: str | tuple[str, str], pair: bool, limit: int, left: bool
                       ) -> tuple[Encoding, int | None]:
        """One input under its own cap: a text keeps at most `limit` tokens, special tokens included; a
        pair's document keeps at most `limit` of its own tokens, then the pair is cut at the model's
        maximum as usual. Returns the encoding and, if it had to be cut, the input's whole token count."""
        direction = "left" if left else "right"
        if not pair:
            specials = self._whole.num_special_tokens_to_add(False)
            if limit <= specials:
                raise ValueError(f"MAX_TOKENS {limit} leaves no room for text after the model's {specials} "
                                 "special tokens")
            text = self._whole.encode(item, add_special_tokens=False)
            whole = len(text.ids) + specials
            if whole > limit:
                text.truncate(limit - specials, direction=direction)
            return self._whole.post_process(text), (whole if whole > limit else None)
        query = self._whole.encode(item[0], add_special_tokens=False)
        document = self._whole.encode(item[1], add_special_tokens=False)
        if len(document.ids) > limit:
            document.truncate(limit, direction=direction)  # asked for: not a reason to refuse the pair
        whole = len(query.ids) + len(document.ids) + self._whole.num_special_tokens_to_add(True)
        encoding = self._truncating[direction].post_process(query, document)
        return encoding, (whole if whole > self.max_length else None)

    def _pack(self, encodings: list[Encoding]) -> TokenBatch:
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
        longest = int(lengths.max()) if len(encodings) else 0
        input_ids = np.full((len(encodings), longest), self.pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(encodings), longest), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            input_ids[row, : lengths[row]] = encoding.ids
            token_type_ids[row, : lengths[row]] = encoding.type_ids
        return TokenBatch(input_ids, token_type_ids, lengths, encodings)

    @property
    def specials(self) -> int:
        """The special tokens the post-processor adds around one text."""
        return self._whole.num_special_tokens_to_add(False)

    def pieces(self, texts: list[str]) -> list[Encoding]:
        """Each text's tokens alone, without special tokens, never cut."""
        return self._whole.encode_batch(texts, add_special_tokens=False)

    def wrap(self, pieces: list[Encoding]) -> Encoding:
        """Pieces laid end to end and wrapped by the model's special tokens, as the tokenizer wraps one text."""
        return self._whole.post_process(Encoding.merge(pieces, growing_offsets=True))

    def slices(self, text: str, size: int) -> list[Encoding]:
        """A text's tokens (no special tokens) in consecutive slices of `size`, the last one shorter."""
        encoding = self._whole.encode(text, add_special_tokens=False)
        encoding.truncate(size, stride=0)
        return [encoding, *encoding.overflowing]

    def tokenize(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return self._whole.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._whole.decode(ids, skip_special_tokens=skip_special_tokens)

    @property
    def vocab_size(self) -> int:
        return self._whole.get_vocab_size(with_added_tokens=True)
