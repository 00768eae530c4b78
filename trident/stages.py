"""The steps of an ensemble as plain Python over numpy, one request dict in, one out: tokenizer (or ids),
engine, and the embeddings' postprocess (the other tasks' postprocess steps: `trident.task_stages`).

The Triton models in `model_repository/` only move tensors in and out of these; tests call them
directly. A step gets every request of one dynamic batch at once, so it can work across them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trident import heads, multi_vector, spans
from trident import tensors as T
from trident.batching import pad
from trident.engines import load_engine
from trident.errors import InputTooLongError, StageError, StageErrorKind
from trident.postprocess import shape_embeddings
from trident.spec import ModelSpec
from trident.tokenization import TextTokenizer, TokenBatch

Request = dict[str, np.ndarray | None]
StageResult = dict[str, np.ndarray] | Exception


def per_item(values: np.ndarray | None, n: int, default: object) -> list:
    """A per-item [n, 1] input as a list, or the default for each item when it was not sent."""
    if values is None:
        return [default] * n
    return values.reshape(n).tolist()


def option(request: Request, name: str, n: int) -> list:
    """An option tensor's values, or its default (`tensors.DEFAULTS`) for each item when it was not sent."""
    return per_item(request.get(name), n, T.DEFAULTS[name])


def invalid_input(exc: Exception) -> StageError:
    """A request the stage cannot read: the client's fault, said as the stage found it."""
    return exc if isinstance(exc, StageError) else StageError(StageErrorKind.INVALID_INPUT, str(exc))


def decode_texts(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.reshape(-1)]


def spread(total_ns: int, n: int) -> np.ndarray:
    """A request's tokenizing nanoseconds as TOKENIZE_NS: one share per item, summing exactly to the total
    (the gateway adds up the items of all its sub-requests)."""
    total = max(0, total_ns)
    shares = np.full((n, 1), total // max(n, 1), dtype=np.int64)
    if n:
        shares[0, 0] += total % n
    return shares


class PerRequestStage:
    """A step that answers each request of a dynamic batch on its own (the engine is the one that does not)."""

    # Tokenizing or normalizing a request costs less than asking tritonserver whether it was cancelled
    # (measured: the question was a fifth of the tokenizer's CPU per 5-token request); and Triton 2.51 never
    # marks an ensemble's composing request cancelled (tests/test_cancellation.py): only direct calls are.
    skips_cancelled = False

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        self.spec = spec

    def process(self, requests: list[Request]) -> list[StageResult]:
        return [self._one(request) for request in requests]

    def _one(self, request: Request) -> StageResult:
        raise NotImplementedError


@dataclass
class TextInputs:
    """One request's texts and per-item options, as the tokenizer takes them."""

    texts: list[str]
    pairs: list[str] | None
    truncate: list[bool]
    left: list[bool]
    caps: list[int]
    sides: list[str]

    @staticmethod
    def joined(parts: list[TextInputs]) -> TextInputs:
        """Several requests' inputs as one batch (all with pairs, or all without)."""
        def every(name: str) -> list:
            return [item for part in parts for item in getattr(part, name)]

        pairs = None if parts[0].pairs is None else every("pairs")
        return TextInputs(every("texts"), pairs, every("truncate"), every("left"), every("caps"), every("sides"))


class TokenizerStage(PerRequestStage):
    """Texts -> token ids. Every request of a dynamic batch is tokenized in one call (one crossing into the
    tokenizer's Rust, its thread pool used once); the rows are then handed back per request."""

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        super().__init__(spec, files)
        self.tokenizer = TextTokenizer(files / "tokenizer.json", spec.max_length, spec.pad_token_id)
        self.with_spans = spec.task_row.spans  # NER maps tokens back to words and characters
        self.multi_vector = spec.task_row.multi_vector  # each SIDE tokenized its own way
        self.sides = spec.sides

    def process(self, requests: list[Request]) -> list[StageResult]:
        if len(requests) == 1 or any(spans.asked(request) for request in requests):
            return [self._one(request) for request in requests]
        started = time.perf_counter_ns()
        try:
            parts = [self._inputs(request) for request in requests]
            if len({part.pairs is None for part in parts}) > 1:
                raise ValueError("pairs and single texts are tokenized apart")
            batch = self._encode(TextInputs.joined(parts))
        except (ValueError, UnicodeDecodeError):  # a refusal: each request alone, so that it is its own
            return [self._one(request) for request in requests]
        elapsed, total = time.perf_counter_ns() - started, len(batch.lengths)
        results, start = [], 0
        for request, part in zip(requests, parts, strict=True):
            n = len(part.texts)
            results.append(self._result(request, part, batch.rows(start, start + n), elapsed * n // max(total, 1)))
            start += n
        return results

    def _one(self, request: Request) -> StageResult:
        if spans.asked(request):
            return self._laid_out(request)
        started = time.perf_counter_ns()
        try:
            inputs = self._inputs(request)
            batch = self._encode(inputs)
        except (ValueError, UnicodeDecodeError) as exc:
            return invalid_input(exc)
        return self._result(request, inputs, batch, time.perf_counter_ns() - started)

    def _laid_out(self, request: Request) -> StageResult:
        """Late chunking or long inputs: windows and the token ranges each item pools (trident.spans)."""
        started = time.perf_counter_ns()
        try:
            texts = decode_texts(request[T.TEXT])
            prompt = decode_texts(request[T.PROMPT])[0] if request.get(T.PROMPT) is not None else ""
            late = option(request, T.LATE_CHUNKING, len(texts))[0]
            layout = (spans.late_chunks if late else spans.long_inputs)(self.tokenizer, texts, prompt)
        except (ValueError, UnicodeDecodeError) as exc:
            return invalid_input(exc)
        result = spans.tensors(layout, self.tokenizer.pad_id)
        if (adapters := adapter_rows(request, self.spec)) is not None:  # one request: one adapter for all its rows
            if isinstance(adapters, StageError):
                return adapters
            result[T.TOKEN_TYPE_IDS] = np.zeros_like(result[T.TOKEN_TYPE_IDS]) + adapters
        result[T.TOKENIZE_NS] = spread(time.perf_counter_ns() - started, len(texts))
        return result

    def _inputs(self, request: Request) -> TextInputs:
        texts = decode_texts(request[T.TEXT])
        pairs = decode_texts(request[T.TEXT_PAIR]) if request.get(T.TEXT_PAIR) is not None else None
        n = len(texts)
        caps = option(request, T.MAX_TOKENS, n)
        sides = [multi_vector.check_side(side) for side in decode_texts(request[T.SIDE])] \
            if request.get(T.SIDE) is not None else [""] * n
        if self.multi_vector:
            caps = [multi_vector.tighter(cap, multi_vector.side_limit(self.sides, side))
                    for cap, side in zip(caps, sides, strict=True)]
        return TextInputs(texts, pairs, option(request, T.TRUNCATE, n), option(request, T.TRUNCATE_LEFT, n), caps,
                          sides)

    def _encode(self, inputs: TextInputs) -> TokenBatch:
        return self.tokenizer.encode(inputs.texts, inputs.pairs, truncate=inputs.truncate, left=inputs.left,
                                     max_tokens=inputs.caps)

    def _result(self, request: Request, inputs: TextInputs, batch: TokenBatch, spent_ns: int) -> StageResult:
        result = {
            T.INPUT_IDS: batch.input_ids,
            T.TOKEN_TYPE_IDS: batch.token_type_ids,
            T.NUM_TOKENS: batch.lengths.reshape(-1, 1),
        }
        if self.with_spans:
            result[T.OFFSETS], result[T.WORD_IDS] = batch.spans()
        if (adapters := adapter_rows(request, self.spec)) is not None:
            if isinstance(adapters, StageError):
                return adapters
            result[T.TOKEN_TYPE_IDS] = np.zeros_like(batch.token_type_ids) + adapters
        if self.multi_vector:
            ids, types, lengths, attention = multi_vector.expand_queries(
                batch.input_ids, batch.token_type_ids, batch.lengths, inputs.sides, self.sides.get("expansion"))
            result.update({T.INPUT_IDS: ids, T.TOKEN_TYPE_IDS: types, T.NUM_TOKENS: lengths.reshape(-1, 1),
                           T.ATTENTION_MASK: attention})
        result[T.TOKENIZE_NS] = spread(spent_ns, len(inputs.texts))
        return result


class IdsStage(PerRequestStage):
    """Token ids from the client -> the engine's inputs: the one place where token-id input is truncated
    (or refused as too long), so that ids take the same engine and postprocess as text."""

    def _one(self, request: Request) -> StageResult:
        started = time.perf_counter_ns()
        rows = request[T.TOKEN_IDS]
        n = len(rows)
        truncate, left = option(request, T.TRUNCATE, n), option(request, T.TRUNCATE_LEFT, n)
        caps = option(request, T.MAX_TOKENS, n)
        kept = []
        for i, row in enumerate(rows):
            ids = row[: sent_length(row)]
            limit = min(caps[i], self.spec.max_length) if caps[i] > 0 else self.spec.max_length
            if len(ids) > limit and not truncate[i]:
                return InputTooLongError(i, len(ids), limit)
            kept.append(keep_tokens(ids, limit, left[i]))
        input_ids, _ = pad(kept, self.spec.pad_token_id, "right")
        adapters = adapter_rows(request, self.spec)
        if isinstance(adapters, StageError):
            return adapters
        types = np.zeros_like(input_ids) if adapters is None else np.zeros_like(input_ids) + adapters
        return {T.INPUT_IDS: input_ids, T.TOKEN_TYPE_IDS: types,
                T.NUM_TOKENS: np.array([len(ids) for ids in kept], dtype=np.int32).reshape(-1, 1),
                T.TOKENIZE_NS: spread(time.perf_counter_ns() - started, n)}


def adapter_rows(request: Request, spec: ModelSpec) -> np.ndarray | StageError | None:
    """ADAPTER as a column of token types ([n, 1]): a model with LoRA adapters reads each input's adapter
    from its token type ids (trident/models/jina_v3.py). None when the request names none."""
    values = request.get(T.ADAPTER)
    if values is None:
        return None
    adapters = values.reshape(-1, 1).astype(np.int64)
    if adapters.min() < 0 or adapters.max() > len(spec.adapters):
        return StageError(StageErrorKind.INVALID_INPUT,
                          f"ADAPTER must be between 0 and {len(spec.adapters)}, got {int(adapters.max())}")
    return adapters


def sent_length(row: np.ndarray) -> int:
    """A row's length as the client sent it: up to the first padding sentinel."""
    padding = np.flatnonzero(row == T.PAD_SENTINEL)
    return int(padding[0]) if len(padding) else len(row)


def keep_tokens(ids: np.ndarray, max_length: int, left: bool) -> np.ndarray:
    """At most `max_length` ids: the last ones when cutting from the left, else the first ones."""
    return ids[-max_length:] if left else ids[:max_length]


# Set by the Triton adapter on each request: the outputs its ensemble maps (Triton asks a composing model for
# exactly those). The engine computes only the one a request wants: pooled vectors, or token embeddings.
REQUESTED_OUTPUTS = "requested outputs"


class EngineStage:
    """Unpads every sequence of every request, runs them together, hands each request its rows. Requests
    that want another of the engine's outputs (`Task.engine_outputs`) run together too, separately."""

    skips_cancelled = True  # a batch's engine work outweighs asking tritonserver about each request

    def __init__(self, spec: ModelSpec, files: Path) -> None:
        self.spec = spec
        self.engine = load_engine(spec, files)

    def wanted(self, request: Request) -> tuple[str, ...]:
        """The engine outputs the request's ensemble maps, else the main one: one, or a hybrid model's several."""
        requested = request.get(REQUESTED_OUTPUTS) or ()
        outputs = self.spec.task_row.engine_outputs
        wanted = tuple(name for name in outputs if name in requested) or outputs[:1]
        return wanted if self.spec.task_row.hybrid else wanted[:1]

    def process(self, requests: list[Request]) -> list[StageResult]:
        results: list[StageResult | None] = [None] * len(requests)
        laid_out = [i for i, request in enumerate(requests) if request.get(T.POOL_RANGES) is not None]
        if laid_out:
            for i, result in zip(laid_out, self._pool_ranges([requests[i] for i in laid_out]), strict=True):
                results[i] = result
        for wanted in dict.fromkeys(self.wanted(request) for request in requests):
            group = [i for i, request in enumerate(requests) if self.wanted(request) == wanted and results[i] is None]
            if group:
                for i, result in zip(group, self._run([requests[i] for i in group], wanted), strict=True):
                    results[i] = result
        return results

    def _run(self, requests: list[Request], outputs: tuple[str, ...]) -> list[StageResult]:
        sequences, types, attention, counts = [], [], [], []
        for request in requests:
            ids, type_ids, masks = request[T.INPUT_IDS], request[T.TOKEN_TYPE_IDS], request.get(T.ATTENTION_MASK)
            lengths = request[T.NUM_TOKENS].reshape(-1)
            sequences += [ids[row, :length] for row, length in enumerate(lengths)]
            types += [type_ids[row, :length] for row, length in enumerate(lengths)]
            attention += [np.ones(length, dtype=np.int64) if masks is None else masks[row, :length].astype(np.int64)
                          for row, length in enumerate(lengths)]
            counts.append(len(lengths))
        masked = any(request.get(T.ATTENTION_MASK) is not None for request in requests)
        types = types if self.spec.uses_token_type_ids else None
        if len(outputs) == 1:
            rows = {outputs[0]: self.engine.run(sequences, types, outputs[0], attention if masked else None)}
        else:  # one pass for all of them
            rows = self.engine.run_outputs(sequences, types, outputs, attention if masked else None)
        results: list[StageResult] = []
        start = 0
        for count in counts:
            results.append({output: stack_rows(rows[output][start : start + count]) for output in outputs})
            start += count
        return results

    def _pool_ranges(self, requests: list[Request]) -> list[StageResult]:
        """Late chunking and long inputs (trident.spans): every request's windows in one engine call for their
        last hidden states, then each item's mean over its ranges, through the head's Dense modules."""
        if heads.dense_modules(self.spec.head):
            error = StageError(StageErrorKind.INVALID_INPUT, "late chunking and long inputs need a head without "
                               "Dense modules: the engine folds them into its pooled output")
            return [error] * len(requests)
        laid = [spans.windows(request) for request in requests]
        sequences = [window for ids, _ in laid for window in ids]
        types = [window for _, type_ids in laid for window in type_ids] if self.spec.uses_token_type_ids else None
        hidden = self.engine.run(sequences, types, T.TOKEN_EMBEDDINGS)
        results: list[StageResult] = []
        start = 0
        for request, (ids, _) in zip(requests, laid, strict=True):
            pooled = spans.pool(hidden[start : start + len(ids)], request[T.POOL_RANGES])
            results.append({T.POOLED: pooled})
            start += len(ids)
        return results


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """One request's outputs as one float32 array; NER's per-token rows are zero-padded to the longest."""
    if rows[0].ndim == 1:
        return np.stack(rows).astype(np.float32)
    padded = np.zeros((len(rows), max(len(r) for r in rows), rows[0].shape[1]), dtype=np.float32)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return padded


class EmbeddingPostprocessStage(PerRequestStage):
    def _one(self, request: Request) -> StageResult:
        pooled = request[T.POOLED]
        n = len(pooled)
        normalize = per_item(request.get(T.NORMALIZE), n, self.spec.normalize)
        dimensions = option(request, T.DIMENSIONS, n)
        if len(set(normalize)) > 1 or len(set(dimensions)) > 1:
            return StageError(StageErrorKind.INVALID_INPUT,
                              "NORMALIZE and DIMENSIONS must be the same for every item of one request")
        if not 0 <= dimensions[0] <= self.spec.dim:
            return StageError(StageErrorKind.INVALID_INPUT,
                              f"DIMENSIONS must be between 1 and {self.spec.dim}, got {dimensions[0]}")
        return {T.EMBEDDINGS: shape_embeddings(pooled, bool(normalize[0]), int(dimensions[0]))}
