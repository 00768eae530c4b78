"""The response cache: each input's answer from the model, kept in memory, least recently used out first.

An entry is one input's rows of the ensemble's outputs, keyed by everything that decides them: the model
(its manifest's fingerprint, so a rebuilt model never answers from its predecessor's entries), the ensemble
(text or token ids), every option the job sends to Triton, and the input itself (text, token ids or pair).
What a route does with the rows afterwards (JSON or base64, typed embeddings, top_n) is not part of it.
A request whose inputs are all cached makes no Triton call; one with some cached computes only the others.
A cached answer is the rows of a computed one, so the route writes it byte for byte the same.

Why here and not Triton's response cache (the bundled Triton 2.51 has one: `response_cache` in a config and
`--cache-config local,size=N`, which caches an ensemble's top-level responses): Triton keys a whole request,
so a batch with one new input is computed whole, and its answer does not say whether it came from the cache,
so there would be no `x-cache`; a hit there still crosses gRPC and tritonserver's ensemble scheduling.

With several gateway workers each keeps its own cache: `trident serve --cache-size` is their sum.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import numpy as np

from gateway import metrics
from trident import tensors as T

Row = dict[str, np.ndarray]  # one input's outputs, each [1, ...]
# Per-token outputs, zero-padded to the widest input of their sub-request, are kept cut to the input's own rows.
RAGGED = {T.TOKEN_EMBEDDINGS: T.NUM_TOKENS, T.VECTORS: T.NUM_VECTORS}
ENTRY_OVERHEAD = 256  # bytes of the key's tuple and the dict around an entry's arrays, roughly


def own_row(outputs: dict[str, np.ndarray], index: int) -> Row:
    """Input `index`'s rows of a sub-request's outputs, copied (the answer's arrays are views of its gRPC
    message), per-token ones without their padding, and no tokenizing time (a hit tokenizes nothing)."""
    row = {}
    for name, array in outputs.items():
        value = array[index : index + 1]
        if name in RAGGED:
            value = value[:, : int(outputs[RAGGED[name]].reshape(-1)[index])]
        row[name] = np.zeros_like(value) if name == T.TOKENIZE_NS else value.copy()
    return row


def entry_bytes(key: Hashable, row: Row) -> int:
    text = sum(len(part) for part in key if isinstance(part, str | bytes)) if isinstance(key, tuple) else 0
    return ENTRY_OVERHEAD + text + sum(array.nbytes for array in row.values())


class ResponseCache:
    """At most `max_bytes` of entries (arrays, keys' texts and a fixed overhead each)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[Hashable, tuple[Row, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Row | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, row: Row) -> None:
        size = entry_bytes(key, row)
        if size > self.max_bytes or key in self._entries:
            return
        while self.bytes + size > self.max_bytes:
            _, (_, freed) = self._entries.popitem(last=False)
            self.bytes -= freed
        self._entries[key] = (row, size)
        self.bytes += size
        metrics.CACHE_BYTES.set(self.bytes)
        metrics.CACHE_ENTRIES.set(len(self._entries))
