"""The request boundary: every check a request passes before it becomes a job, written once.

pydantic checks the types (`gateway.schemas`); the checks here need more than a type: the model
(vocabulary, dimensions, prompts), the limits (batch size) or the text itself (empty, lone surrogates).
Each wire schema's `to_job` calls them in the order its clients have always seen the errors.
"""

from __future__ import annotations

import functools
import math
import typing
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ValidationError

from gateway.embedding_types import BY_RANGES
from gateway.errors import ApiError, ErrorKind
from gateway.settings import GatewaySettings
from trident import heads
from trident.spec import ModelSpec

TEXT_OR_IDS = "a string, a list of strings, a list of token ids or a list of token-id lists"
PREDICT_SHAPES = "a string, a pair [text, text_pair], or a batch [[text], [text, text_pair], ...]"
PREDICT_TOKENS_SHAPES = "a batch [[text, ...]], a list of texts or one text"


# --- pydantic's complaints, in the request's own terms -----------------------------------------


def describe_validation(errors: Sequence[dict], shapes: dict[str, str]) -> ApiError:
    """pydantic's first complaint; `shapes` says what a field may be when its type is a union."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return ApiError(ErrorKind.INVALID_REQUEST,
                        f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".rstrip(": "))
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if not loc:
        return ApiError(ErrorKind.VALIDATION, "request body must be a JSON object")
    field = loc[0]
    if field in shapes and first.get("type") != "missing":
        return ApiError(ErrorKind.VALIDATION, f"`{field}` must be {shapes[field]}", param=field)
    return ApiError(ErrorKind.VALIDATION, f"invalid request: `{'.'.join(loc)}`: {first.get('msg', 'invalid value')}",
                    param=field)


def parse_body(schema: type[BaseModel], data: object) -> BaseModel:
    """A JSON value already read (`POST /`) validated as `schema` would be by its own route."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise describe_validation(exc.errors(), getattr(schema, "shapes", {})) from None


@functools.cache
def body_schema(endpoint: Callable) -> type[BaseModel] | None:
    """The wire schema a route handler takes as `body` (None for a handler without one)."""
    try:
        return typing.get_type_hints(endpoint).get("body")
    except (NameError, TypeError):
        return None


# --- checks ------------------------------------------------------------------------------------


def check_batch(count: int, settings: GatewaySettings, param: str) -> None:
    if count == 0:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"`{param}` must not be empty", param=param)
    if count > settings.max_client_batch_size:
        raise ApiError(ErrorKind.PAYLOAD_TOO_LARGE, f"{count} inputs in one request; the limit is "
                       f"{settings.max_client_batch_size} (--max-client-batch-size)", param=param)


def check_text(text: str, index: int, param: str, empty_ok: bool = False) -> None:
    if not text and not empty_ok:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"`{param}` item {index} is an empty string", param=param)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"`{param}` item {index} is not valid Unicode (lone surrogate)",
                       param=param) from None


def check_texts(texts: Sequence[str | None], param: str, empty_ok: bool = False) -> None:
    """Every text non-empty (unless `empty_ok`) and valid Unicode; None (no pair) is skipped."""
    for index, text in enumerate(texts):
        if text is not None:
            check_text(text, index, param, empty_ok)


def check_token_ids(token_ids: Sequence[Sequence[int]], vocab_size: int, param: str, empty_ok: bool = False) -> None:
    for index, ids in enumerate(token_ids):
        if not ids and not empty_ok:
            raise ApiError(ErrorKind.INVALID_REQUEST, f"`{param}` item {index} has no token ids", param=param)
        bad = next((i for i in ids if not 0 <= i < vocab_size), None)
        if bad is not None:
            raise ApiError(ErrorKind.VALIDATION, f"`{param}` item {index} has token id {bad}, outside the "
                           f"vocabulary [0, {vocab_size})", param=param)


def check_dimensions(dimensions: int | None, spec: ModelSpec, param: str = "dimensions") -> None:
    if dimensions is not None and not 1 <= dimensions <= spec.dim:
        raise ApiError(ErrorKind.VALIDATION,
                       f"`{param}` must be between 1 and {spec.dim} for {spec.name}, got {dimensions}",
                       param=param)


def check_embedding_types(types: Sequence[str], spec: ModelSpec, normalized: bool, dimensions: int | None,
                          param: str) -> None:
    """int8 / uint8 need the ranges the builder calibrated, which describe the model's normalized vectors
    with all their dimensions: other shapes would be clipped by ranges that are not theirs."""
    by_ranges = [kind for kind in types if kind in BY_RANGES]
    if not by_ranges:
        return
    if not spec.quantization_ranges:
        raise ApiError(ErrorKind.VALIDATION, f"{spec.name} has no calibrated quantization ranges for "
                       f"{by_ranges[0]} (it was built before Trident calibrated them): rebuild it, or ask for "
                       "float, base64, binary or ubinary", param=param)
    if not normalized or (dimensions is not None and dimensions != spec.dim):
        raise ApiError(ErrorKind.VALIDATION, f"{by_ranges[0]} embeddings use the ranges calibrated on "
                       f"{spec.name}'s normalized {spec.dim}-dimension vectors (`quantization_ranges` in /info): "
                       "ask for them normalized and with all dimensions, or ask for float, base64, binary or "
                       "ubinary", param=param)


# Cohere's input_type -> the prompt names a model may have for it, in order of preference.
INPUT_TYPE_PROMPTS = {
    "search_query": ("query", "search_query"),
    "search_document": ("document", "passage", "search_document"),
    "classification": ("classification",),
    "clustering": ("clustering",),
}


def adapter_for(spec: ModelSpec, task: str | None, prompt_name: str | None) -> int:
    """The LoRA adapter a request picks (ModelSpec.adapters, index + 1; 0 none): `task` as in Jina's API, or
    a prompt_name that names an adapter (the model's prompts are named after its tasks)."""
    if task is None:
        return spec.adapters.index(prompt_name) + 1 if prompt_name in spec.adapters else 0
    if task not in spec.adapters:
        known = ", ".join(spec.adapters) or "none"
        raise ApiError(ErrorKind.VALIDATION, f"unknown task {task!r}; {spec.name} has task adapters: {known}",
                       param="task")
    return spec.adapters.index(task) + 1


def task_prompt_name(spec: ModelSpec, task: str | None, prompt_name: str | None) -> str | None:
    """A task brings its own instruction (the prompt of the same name) unless the request names a prompt."""
    return prompt_name if prompt_name is not None or task not in spec.prompts else task


def rerank_inputs(spec: ModelSpec, query: str, documents: list[str], instruction: str | None
                  ) -> tuple[list[str], list[str | None]]:
    """(texts, pairs) for a reranker: (query, document) pairs, or for an LLM reranker its documented prompt
    around each pair, with the request's instruction or the model's default."""
    if not spec.rerank_prompt:
        if instruction is not None:
            raise ApiError(ErrorKind.VALIDATION, f"{spec.name} takes no instruction (only LLM rerankers do)",
                           param="instruction")
        return [query] * len(documents), list(documents)
    chosen = spec.rerank_prompt["instruction"] if instruction is None else instruction
    template = spec.rerank_prompt["template"]
    return [template.format(instruction=chosen, query=query, document=d) for d in documents], [None] * len(documents)


def prompt_for_input_type(texts: list[str], spec: ModelSpec, input_type: str | None) -> list[str]:
    """Cohere's `input_type` as the model's own prompt of that kind; a model without one embeds the texts
    as they are (not with its default prompt, which may be the other side's). No input_type: the default."""
    if input_type is None:
        return apply_prompt(texts, spec, None)
    name = next((name for name in INPUT_TYPE_PROMPTS[input_type] if name in spec.prompts), None)
    return [spec.prompts[name] + text for text in texts] if name else texts


MULTI_VECTOR_SIDES = ("query", "document")


def side_and_prompt(texts: list[str], spec: ModelSpec, prompt_name: str | None) -> tuple[list[str], str]:
    """A multi-vector model's `prompt_name` "query" / "document" picks that side (and its prompt, where the
    model has one: sentence-transformers' encode_query / encode_document); another name is only a prompt."""
    if prompt_name in MULTI_VECTOR_SIDES:
        return [spec.prompts.get(prompt_name, "") + text for text in texts], prompt_name
    return apply_prompt(texts, spec, prompt_name), ""


def apply_prompt(texts: list[str], spec: ModelSpec, prompt_name: str | None) -> list[str]:
    prompt = prompt_text(spec, prompt_name)
    return [prompt + text for text in texts] if prompt else texts


def prompt_text(spec: ModelSpec, prompt_name: str | None) -> str:
    """The prompt a request's `prompt_name` (else the model's default prompt) puts before each text; "" none."""
    name = prompt_name or spec.default_prompt_name
    if name is None:
        return ""
    if name not in spec.prompts:
        known = ", ".join(sorted(spec.prompts)) or "none"
        raise ApiError(ErrorKind.VALIDATION, f"unknown prompt_name {name!r}; {spec.name} has: {known}",
                       param="prompt_name")
    return spec.prompts[name]


# --- late chunking, long inputs, hybrid outputs ------------------------------------------------


# Triton's max_batch_size of every model (builder.repository.MAX_BATCH_SIZE): a late-chunked document's chunks
# travel in one Triton request.
MAX_LATE_CHUNKS = 256


def text_layout(spec: ModelSpec, late_chunking: bool, chunk_long: bool | None, settings: GatewaySettings,
                token_ids: bool, count: int) -> dict[str, bool]:
    """EmbedJob's `late_chunking` / `chunk_long` for a request ({} for neither; trident.spans says what they
    do). `chunk_long` None takes `--chunk-long-inputs` where it applies (mean-pooled models, text input);
    asked for explicitly where it cannot apply, either is refused."""
    if chunk_long is None:
        chunk_long = settings.chunk_long_inputs and not token_ids and not late_chunking and mean_pooled(spec)
    if not (late_chunking or chunk_long):
        return {}
    param = "late_chunking" if late_chunking else "chunk_long_inputs"
    if late_chunking and chunk_long:
        raise ApiError(ErrorKind.VALIDATION, "late_chunking embeds one document in one pass and chunk_long_inputs "
                       "splits long inputs into windows: send one of them", param=param)
    if not mean_pooled(spec):
        raise ApiError(ErrorKind.VALIDATION, f"{param} needs a mean-pooled embedding model; {spec.name} is a "
                       f"{spec.task} model pooling with {spec.pooling or 'no pooling'}", param=param)
    if heads.dense_modules(spec.head):
        raise ApiError(ErrorKind.VALIDATION, f"{param} is not supported yet for {spec.name}, whose head has Dense "
                       "modules after pooling", param=param)
    if token_ids:
        raise ApiError(ErrorKind.VALIDATION, f"{param} takes texts, not token ids", param=param)
    if late_chunking and count > MAX_LATE_CHUNKS:
        raise ApiError(ErrorKind.VALIDATION, f"late_chunking takes at most {MAX_LATE_CHUNKS} chunks of one "
                       f"document, got {count}", param=param)
    return {"late_chunking": late_chunking, "chunk_long": chunk_long}


def mean_pooled(spec: ModelSpec) -> bool:
    """A dense embedding model that mean-pools its token hidden states (what late chunking and windows pool)."""
    return spec.task_row.token_embeddings and spec.pooling == "mean"


def lays_out(spec: ModelSpec) -> bool:
    """Whether late chunking and long inputs serve the model (/info says so)."""
    return mean_pooled(spec) and not heads.dense_modules(spec.head)


HYBRID_FLAGS = {"dense": "return_dense", "sparse": "return_sparse", "colbert": "return_colbert"}


def hybrid_kinds(spec: ModelSpec, asked: dict[str, bool]) -> tuple[str, ...]:
    """The outputs `/embed_hybrid` asks for ({kind: flag}), each one the model has."""
    kinds = tuple(kind for kind, wanted in asked.items() if wanted)
    if not kinds:
        raise ApiError(ErrorKind.VALIDATION, "return_dense, return_sparse and return_colbert are all false: ask "
                       "for at least one", param="return_dense")
    lacking = [kind for kind in kinds if kind not in spec.task_row.vector_kinds]
    if lacking:
        has = ", ".join(HYBRID_FLAGS[kind] for kind in spec.task_row.vector_kinds) or "none of them"
        raise ApiError(ErrorKind.INVALID_REQUEST, f"model {spec.name!r} ({spec.task}) has no {' or '.join(lacking)} "
                       f"output: set {', '.join(HYBRID_FLAGS[k] for k in lacking)} to false (it answers {has})",
                       param=HYBRID_FLAGS[lacking[0]])
    return kinds


def check_modes(spec: ModelSpec, weights: list[float] | None, scores: bool) -> list[float]:
    """A hybrid model's rerank weights [dense, sparse, colbert] (FlagEmbedding's default [1, 1, 1] when absent);
    `weights` and `scores` are refused for other models, which have one score."""
    if not spec.task_row.hybrid:
        if weights is not None or scores:
            raise ApiError(ErrorKind.INVALID_REQUEST, f"`weights` and `scores` are for hybrid (BGE-M3) models; "
                           f"{spec.name!r} is a {spec.task} model with one score", param="weights")
        return []
    if weights is None:
        return [1.0, 1.0, 1.0]
    if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ApiError(ErrorKind.VALIDATION, "`weights` must be [dense, sparse, colbert]: three numbers >= 0, "
                       f"not all 0; got {weights}", param="weights")
    return list(weights)


# --- input shapes pydantic cannot tell apart ---------------------------------------------------


def split_inputs(value: str | list, param: str) -> tuple[list[str] | None, list[list[int]] | None]:
    """OpenAI/TEI `input`: str | [str] | [int] | [[int]] -> (texts, token id lists)."""
    if isinstance(value, str):
        return [value], None
    if not value:
        raise ApiError(ErrorKind.INVALID_REQUEST, f"`{param}` must not be empty", param=param)
    if isinstance(value[0], str):
        return list(value), None
    if isinstance(value[0], int):
        return None, [list(value)]
    return None, [list(ids) for ids in value]


def parse_predict_inputs(value: object) -> tuple[list[tuple[str, str | None]], bool]:
    """TEI's `/predict` inputs -> ([(text, pair or None)], batched).

    `"s"` is one text, `["a", "b"]` one pair (`["s"]` one text), `[["s"], ["a", "b"]]` a batch.
    """
    if isinstance(value, str):
        return [(value, None)], False
    if not isinstance(value, list) or not value:
        raise ApiError(ErrorKind.INVALID_REQUEST if value == [] else ErrorKind.VALIDATION,
                       f"`inputs` must be {PREDICT_SHAPES}", param="inputs")
    if all(isinstance(v, str) for v in value):
        return [_sequence(value, 0)], False
    if all(isinstance(v, list) for v in value):
        return [_sequence(v, i) for i, v in enumerate(value)], True
    raise ApiError(ErrorKind.VALIDATION, f"`inputs` must be {PREDICT_SHAPES}; do not mix strings and lists",
                   param="inputs")


def _sequence(value: list, index: int) -> tuple[str, str | None]:
    if not 1 <= len(value) <= 2 or not all(isinstance(v, str) for v in value):
        raise ApiError(ErrorKind.VALIDATION,
                       f"`inputs` item {index} must be [text] or [text, text_pair], got {len(value)} items",
                       param="inputs")
    return (value[0], value[1] if len(value) == 2 else None)


def parse_ner_inputs(value: object) -> list[str]:
    """BEI's `/predict_tokens` inputs -> texts, in order (the batch's inner lists are flattened)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        texts = [text for inner in value for text in inner]
        if texts and all(isinstance(t, str) for t in texts):
            return texts
    raise ApiError(ErrorKind.INVALID_REQUEST if value in ([], [[]]) else ErrorKind.VALIDATION,
                   f"`inputs` must be {PREDICT_TOKENS_SHAPES}", param="inputs")
