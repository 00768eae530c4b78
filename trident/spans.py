"""Mean pooling over token ranges that are not one engine row each: late chunking and long inputs.

Both lay a request's texts out as windows (engine sequences) and, per item, ranges of token positions over the
request's tokens (its windows one after another) whose last hidden states the item's vector is the mean of:

- late chunking (LATE_CHUNKING): the texts are consecutive chunks of ONE document. Each chunk is tokenized
  on its own without special tokens, the ids concatenated after the prompt's (tokenized apart, belonging to no
  chunk) and wrapped by the model's special tokens as one text: one window, carried by the first item's row.
  Chunk i's range is its own tokens. A document past the model's maximum is refused with its token count.
- long inputs (CHUNK_LONG): an input past the maximum is tokenized whole and split into consecutive windows
  that fill the maximum, each the prompt + its slice + the special tokens; its ranges are each window's slice
  (every content token once, from the window that holds it). An input that fits is one window, pooled whole,
  exactly as without CHUNK_LONG.

The tokenizer sends the windows packed in each item's row (WINDOWS: their lengths) and POOL_RANGES; the engine
runs the windows like any rows, pools the ranges and applies the head's Dense modules (`EngineStage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tokenizers import Encoding

from trident import tensors as T
from trident.errors import StageError, StageErrorKind
from trident.tokenization import TextTokenizer


@dataclass
class Layout:
    """Per item, the windows its row packs and its [start, end) ranges over all the request's tokens."""

    rows: list[list[Encoding]] = field(default_factory=list)
    ranges: list[list[tuple[int, int]]] = field(default_factory=list)
    _tokens: int = 0  # the request's tokens laid out so far

    def add(self, windows: list[Encoding], spans: list[tuple[int, int]]) -> None:
        """An item: its windows, and its spans as positions inside the request's tokens from its row on."""
        self.rows.append(windows)
        self.ranges.append([(self._tokens + start, self._tokens + end) for start, end in spans])
        self._tokens += sum(len(window.ids) for window in windows)


def asked(request: dict) -> bool:
    """Whether the request asks for either layout (the gateway sends the flags only when they are true)."""
    return any(request.get(name) is not None and bool(request[name].any()) for name in (T.LATE_CHUNKING,
                                                                                         T.CHUNK_LONG))


def content_positions(encoding: Encoding) -> list[int]:
    """Positions of the text's own tokens in a wrapped encoding: not the post-processor's special tokens."""
    return [i for i, sequence in enumerate(encoding.sequence_ids) if sequence == 0]


def late_chunks(tokenizer: TextTokenizer, chunks: list[str], prompt: str) -> Layout:
    """One document of consecutive chunks (see the module's docstring)."""
    pieces = tokenizer.pieces([prompt, *chunks] if prompt else chunks)
    document = tokenizer.wrap(pieces)
    if len(document.ids) > tokenizer.max_length:  # no silent cut: the whole document is one engine pass
        raise StageError(StageErrorKind.INPUT_TOO_LONG, f"the document (all {len(chunks)} chunks, with the "
                         f"model's special tokens) has {len(document.ids)} tokens, more than the model's maximum "
                         f"of {tokenizer.max_length}: late chunking embeds one document in one pass; send fewer "
                         "or shorter chunks", num_tokens=len(document.ids), max_length=tokenizer.max_length)
    ends = np.cumsum([len(piece.ids) for piece in pieces]) + content_positions(document)[0]
    if prompt:
        ends = ends[1:]
    starts = [int(end) - len(piece.ids) for end, piece in zip(ends, pieces[-len(chunks):], strict=True)]
    rows = [[document]] + [[] for _ in chunks[1:]]  # the document is the request's only window
    return Layout(rows, [[(start, int(end))] for start, end in zip(starts, ends, strict=True)])


def long_inputs(tokenizer: TextTokenizer, texts: list[str], prompt: str) -> Layout:
    """Each text in windows when it is past the maximum, else whole (see the module's docstring)."""
    layout = Layout()
    prompt_piece = tokenizer.pieces([prompt])[0] if prompt else None
    room = tokenizer.max_length - tokenizer.specials - (len(prompt_piece.ids) if prompt_piece else 0)
    for text in texts:
        whole = tokenizer.tokenize(prompt + text)
        if len(whole.ids) <= tokenizer.max_length:
            layout.add([whole], [(0, len(whole.ids))])
            continue
        if room < 1:
            raise StageError(StageErrorKind.INVALID_INPUT, f"the prompt leaves no room for text in a window of "
                             f"{tokenizer.max_length} tokens")
        windows, spans, offset = [], [], 0
        for piece in tokenizer.slices(text, room):
            window = tokenizer.wrap([prompt_piece, piece] if prompt_piece else [piece])
            start = content_positions(window)[0] + (len(prompt_piece.ids) if prompt_piece else 0)
            windows.append(window)
            spans.append((offset + start, offset + start + len(piece.ids)))
            offset += len(window.ids)
        layout.add(windows, spans)
    return layout


def tensors(layout: Layout, pad_id: int) -> dict[str, np.ndarray]:
    """The tokenizer's outputs for a laid-out request: each item's windows packed in its row."""
    n = len(layout.rows)
    totals = np.array([sum(len(w.ids) for w in row) for row in layout.rows], dtype=np.int32)
    longest = max(int(totals.max()), 1) if n else 1
    ids = np.full((n, longest), pad_id, dtype=np.int64)
    types = np.zeros((n, longest), dtype=np.int64)
    windows = np.zeros((n, max(1, max(len(row) for row in layout.rows))), dtype=np.int32)
    ranges = np.zeros((n, max(len(r) for r in layout.ranges), 2), dtype=np.int32)
    for item, row in enumerate(layout.rows):
        if row:
            ids[item, : totals[item]] = np.concatenate([w.ids for w in row])
            types[item, : totals[item]] = np.concatenate([w.type_ids for w in row])
        windows[item, : len(row)] = [len(w.ids) for w in row]
        ranges[item, : len(layout.ranges[item])] = layout.ranges[item]
    return {T.INPUT_IDS: ids, T.TOKEN_TYPE_IDS: types, T.NUM_TOKENS: totals.reshape(-1, 1), T.WINDOWS: windows,
            T.POOL_RANGES: ranges}


def windows(request: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The request's windows (ids, token types), in order, out of its packed rows."""
    ids, types, lengths = [], [], request[T.WINDOWS]
    for row, row_lengths in enumerate(lengths):
        start = 0
        for length in row_lengths[row_lengths > 0]:
            ids.append(request[T.INPUT_IDS][row, start : start + length])
            types.append(request[T.TOKEN_TYPE_IDS][row, start : start + length])
            start += int(length)
    return ids, types


def pool(hidden: list[np.ndarray], ranges: np.ndarray) -> np.ndarray:
    """Per item, the mean of the hidden states at its ranges over the windows' tokens laid end to end."""
    tokens = np.concatenate(hidden).astype(np.float32)
    pooled = []
    for item_ranges in ranges:
        rows = [tokens[start:end] for start, end in item_ranges if end > start]
        pooled.append(np.concatenate(rows).mean(axis=0, dtype=np.float32))
    return np.stack(pooled)
