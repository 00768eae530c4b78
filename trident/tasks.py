"""The task table: what each kind of model computes, and how it is served. One row per task.

The builder (which engine output to export), the repository writer (the postprocess model, the
ensemble's tensors), the Triton stages and the gateway (routes, which ensemble to call) all read
these rows; adding a task adds a row here and its postprocess stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from trident import tensors as T


@dataclass(frozen=True)
class Task:
    name: str
    auto_class: str  # the transformers Auto class whose outputs the engine reproduces
    engine_output: str  # what the engine model returns: T.POOLED (pooled vectors) or T.LOGITS
    postprocess: str  # the stage's source folder under model_repository/ (its model.py names the class)
    options: tuple[str, ...]  # per-request option tensors the postprocess reads (all optional)
    outputs: tuple[str, ...]  # the postprocess step's outputs (the ensemble adds TOKENIZER_OUTPUTS)
    routes: tuple[str, ...]  # the inference routes that serve it; the first is its default route
    invocations_route: str  # what SageMaker's POST /invocations answers as: TEI's route for the task
    pairs: bool = False  # accepts (text, text_pair) inputs
    spans: bool = False  # the tokenizer also sends character offsets and word ids (and TEXT reaches postprocess)
    token_ids: bool = False  # clients may send token ids: a second ensemble `<name>_ids` takes them
    per_token: bool = False  # the engine returns one row per token, not one per input
    sparse: bool = False  # the pooled vector is over the vocabulary (SPLADE), answered as its non-zero entries
    # The engine can also return each token's last hidden state (T.TOKEN_EMBEDDINGS, /embed_all), through a
    # third ensemble `<name>_tokens` (tokenizer -> engine); each request gets only the outputs it asks for.
    token_embeddings: bool = False
    # Dense, sparse and ColBERT outputs from one engine pass (BGE-M3): an ensemble per set of them
    # (trident.model_names.hybrid_model).
    hybrid: bool = False

    @property
    def default_route(self) -> str:
        return self.routes[0]

    @property
    def ensemble_outputs(self) -> tuple[str, ...]:
        return (*self.outputs, *TOKENIZER_OUTPUTS)

    @property
    def engine_outputs(self) -> tuple[str, ...]:
        """What the engine model can return, its main output first."""
        if self.hybrid:
            return tuple(engine for engine, _ in HYBRID_OUTPUTS.values())
        return (self.engine_output, *((T.TOKEN_EMBEDDINGS,) if self.token_embeddings else ()))

    def per_token_output(self, name: str) -> bool:
        """Whether an engine output has one row per token (zero-padded in a request) instead of one per input."""
        return name in (T.TOKEN_EMBEDDINGS, T.TOKEN_WEIGHTS) or (self.per_token and name == self.engine_output)

    @property
    def vector_kinds(self) -> tuple[str, ...]:
        """Which of `/embed_hybrid`'s outputs (HYBRID_OUTPUTS) the task has."""
        if self.hybrid:
            return tuple(HYBRID_OUTPUTS)
        if self.sparse:
            return ("sparse",)
        if self.multi_vector:
            return ("colbert",)
        return ("dense",) if self.pools else ()

    @property
    def pools(self) -> bool:
        """One vector per input (embeddings), from the head after the encoder."""
        return self.engine_output == T.POOLED

    @property
    def multi_vector(self) -> bool:
        """Several vectors per input (ColBERT-style), compared token by token (MaxSim)."""
        return self.engine_output == T.TOKEN_EMBEDDINGS

    @property
    def vectors(self) -> bool:
        """Its answers are vectors of the model's `dim` (pooled, sparse or per token), not labels."""
        return self.pools or self.multi_vector

    @property
    def dense_vectors(self) -> bool:
        """One dense embedding per input: normalized, Matryoshka-cut, int8-calibrated."""
        return self.pools and not self.sparse

    @property
    def logits(self) -> bool:
        """The engine returns logits (rerank, classify, NER), judged by the scores served from them."""
        return self.engine_output == T.LOGITS

    @property
    def scores_sequences(self) -> bool:
        """One row of logits per input: a *ForSequenceClassification head."""
        return self.engine_output == T.LOGITS and not self.per_token


# A hybrid model's outputs: for each, the engine output it needs and the postprocess outputs it answers.
HYBRID_OUTPUTS = {
    "dense": (T.POOLED, (T.EMBEDDINGS,)),
    "sparse": (T.TOKEN_WEIGHTS, (T.SPARSE_INDICES, T.SPARSE_VALUES)),
    "colbert": (T.TOKEN_EMBEDDINGS, (T.VECTORS, T.NUM_VECTORS)),
}

# What the tokenizer (or ids) step answers besides the engine's inputs, straight out of every ensemble.
TOKENIZER_OUTPUTS = (T.NUM_TOKENS, T.TOKENIZE_NS)

TASKS: dict[str, Task] = {task.name: task for task in (
    Task("embedding", auto_class="AutoModel", engine_output=T.POOLED, postprocess="postprocess",
         options=(T.NORMALIZE, T.DIMENSIONS), outputs=(T.EMBEDDINGS,),
         routes=("/v1/embeddings", "/embed", "/v2/embed", "/similarity", "/embed_all", "/embed_hybrid"),
         invocations_route="/embed", token_ids=True, token_embeddings=True),
    Task("sparse", auto_class="AutoModelForMaskedLM", engine_output=T.POOLED, postprocess="sparse",
         options=(T.TOP_K,), outputs=(T.SPARSE_INDICES, T.SPARSE_VALUES),
         routes=("/embed_sparse", "/embed_hybrid"), invocations_route="/embed_sparse", token_ids=True, sparse=True),
    Task("multi_vector", auto_class="AutoModel", engine_output=T.TOKEN_EMBEDDINGS, postprocess="multi_vector",
         options=(T.SIDE,), outputs=(T.VECTORS, T.NUM_VECTORS),
         routes=("/embed_all", "/rerank", "/v1/rerank", "/v2/rerank", "/embed_hybrid"), invocations_route="/embed_all",
         per_token=True),
    # BGE-M3 (FlagEmbedding's layout): `<name>` and `<name>_ids` answer the dense vector; `<name>_hybrid_<kinds>`
    # (and its `_ids`) any set of dense, sparse and ColBERT outputs, each computed only where asked.
    Task("hybrid", auto_class="AutoModel", engine_output=T.POOLED, postprocess="hybrid",
         options=(T.NORMALIZE, T.DIMENSIONS, T.TOP_K), outputs=(T.EMBEDDINGS,),
         routes=("/v1/embeddings", "/embed", "/v2/embed", "/similarity", "/embed_sparse", "/embed_all",
                 "/embed_hybrid", "/rerank", "/v1/rerank", "/v2/rerank"),
         invocations_route="/embed", token_ids=True, hybrid=True),
    Task("reranker", auto_class="AutoModelForSequenceClassification", engine_output=T.LOGITS, postprocess="scores",
         options=(T.RAW_SCORES,), outputs=(T.SCORES,),
         routes=("/rerank", "/v1/rerank", "/v2/rerank", "/predict"), invocations_route="/rerank", pairs=True),
    Task("classifier", auto_class="AutoModelForSequenceClassification", engine_output=T.LOGITS, postprocess="scores",
         options=(T.RAW_SCORES,), outputs=(T.SCORES,),
         routes=("/predict",), invocations_route="/predict", pairs=True),
    Task("ner", auto_class="AutoModelForTokenClassification", engine_output=T.LOGITS, postprocess="ner",
         options=(T.AGGREGATION_STRATEGY, T.RAW_SCORES), outputs=(T.RESULT,),
         routes=("/predict_tokens",), invocations_route="/predict_tokens", spans=True, per_token=True),
)}
TASK_NAMES = tuple(TASKS)
INFERENCE_ROUTES = tuple(dict.fromkeys(route for task in TASKS.values() for route in task.routes))


def task_of(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
    return TASKS[name]


def tasks_for_route(route: str) -> tuple[str, ...]:
    return tuple(task.name for task in TASKS.values() if route in task.routes)


def hybrid_kinds(kinds: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A set of hybrid outputs in HYBRID_OUTPUTS' order: one name per set."""
    return tuple(kind for kind in HYBRID_OUTPUTS if kind in kinds)


def hybrid_outputs(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The postprocess outputs a set of hybrid outputs answers, in order."""
    return tuple(name for kind in hybrid_kinds(kinds) for name in HYBRID_OUTPUTS[kind][1])
