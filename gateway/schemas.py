"""Request bodies as clients send them, validated by pydantic (strict: no silent coercion), and each one's
`to_job`: the rest of its validation (`gateway.validation`) and the job it becomes (`gateway.jobs`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from gateway import validation as check
from gateway.embedding_types import EmbeddingType
from gateway.errors import ApiError, ErrorKind
from gateway.jobs import (
    DecodeJob,
    EmbedJob,
    HybridJob,
    MultiVectorJob,
    NerJob,
    ScoreJob,
    SparseJob,
    TokenizeJob,
    TokensJob,
)
from gateway.settings import GatewaySettings
from trident.priorities import PRIORITY_NAMES
from trident.spec import ModelSpec
from trident.tasks import HYBRID_OUTPUTS as HYBRID_KINDS

Direction = Literal["right", "left", "Right", "Left"]
PriorityName = Literal[PRIORITY_NAMES]  # "interactive" | "bulk"
INT32_MAX = 2**31 - 1  # MAX_TOKENS travels as TYPE_INT32
TextOrIds = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class Lenient(BaseModel):
    # Clients send fields of their own (OpenAI's `user`, SDK extras): ignore what we do not use.
    model_config = ConfigDict(extra="ignore")
    # What a union-typed field may be, said when pydantic refuses it (see validation.describe_validation).
    shapes: ClassVar[dict[str, str]] = {}

    def truncation_fields(self, settings: GatewaySettings) -> dict[str, bool]:
        """`truncate` (unset: `--auto-truncate`) and `truncate_left`, as Job fields."""
        truncate = self.truncate
        return {"truncate": settings.auto_truncate if truncate is None else truncate,
                "truncate_left": self.truncation_direction.lower() == "left"}


class InferenceBody(Lenient):
    """A body of a route that runs the model: it may say which traffic it is (`trident.priorities`)."""

    priority: PriorityName | None = Field(None, description="Trident extension: `interactive` (a user waits) or "
                                          "`bulk` (indexing); unset: the `x-trident-priority` header, else bulk "
                                          "when the request has more inputs than `--bulk-threshold`")


def embedding_inputs(body: OpenAIEmbeddingRequest | EmbedRequest | EmbedSparseRequest, sent: str | list, param: str,
                     spec: ModelSpec, settings: GatewaySettings) -> dict:
    """OpenAI / TEI `input(s)`, checked, as the fields of an embedding job: texts (prompt applied) or ids."""
    texts, token_ids = check.split_inputs(sent, param)
    if texts is not None:
        check.check_texts(texts, param)
    check.check_batch(len(texts if texts is not None else token_ids), settings, param)
    fields = {"param": param, **body.truncation_fields(settings)}
    if texts is not None:
        texts_sent = sum(map(len, texts))  # before the prompt: x-compute-characters
        prompt_name = check.task_prompt_name(spec, getattr(body, "task", None), body.prompt_name)
        return {**fields, "texts": check.apply_prompt(texts, spec, prompt_name), "characters": texts_sent}
    check.check_token_ids(token_ids, spec.vocab_size, param)
    return {**fields, "token_ids": token_ids}


def embedding_job(body: OpenAIEmbeddingRequest | EmbedRequest, sent: str | list, param: str, spec: ModelSpec,
                  settings: GatewaySettings, normalize: bool) -> EmbedJob:
    inputs = embedding_inputs(body, sent, param, spec, settings)
    check.check_dimensions(body.dimensions, spec)
    inputs.update(laid_out(body, sent, spec, settings, inputs, body.late_chunking, body.chunk_long_inputs))
    return EmbedJob(**inputs, normalize=normalize, dimensions=body.dimensions, model_normalizes=spec.normalize,
                    adapter=check.adapter_for(spec, body.task, body.prompt_name))


def laid_out(body: OpenAIEmbeddingRequest | EmbedRequest | CohereEmbedRequest, sent: str | list, spec: ModelSpec,
             settings: GatewaySettings, inputs: dict, late_chunking: bool, chunk_long: bool | None) -> dict:
    """EmbedJob fields for late chunking / long inputs ({} for neither): the texts without the prompt, which
    travels apart (it belongs to no chunk; it starts every window)."""
    count = len(inputs["texts"] if inputs.get("texts") is not None else inputs["token_ids"])
    layout = check.text_layout(spec, late_chunking, chunk_long, settings, inputs.get("texts") is None, count)
    if not layout:
        return {}
    texts = [sent] if isinstance(sent, str) else list(sent)
    if isinstance(body, CohereEmbedRequest):
        prompt = check.prompt_for_input_type([""], spec, body.input_type)[0]
    else:
        prompt = check.prompt_text(spec, check.task_prompt_name(spec, getattr(body, "task", None), body.prompt_name))
    return {**layout, "texts": texts, "prompt": prompt}


LATE_CHUNKING = ("Trident extension (Jina's field): the inputs are consecutive chunks of one document, each "
                 "embedded from the document's token states (mean-pooled models)")
CHUNK_LONG_INPUTS = ("Trident extension: inputs past the model's maximum are embedded in windows, the mean over all "
                     "their tokens, instead of cut (mean-pooled models; default `--chunk-long-inputs`)")


class OpenAIEmbeddingRequest(InferenceBody):
    shapes = {"input": check.TEXT_OR_IDS}

    input: TextOrIds = Field(description="A string, a list of strings, a list of token ids or a list of those")
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, description="Matryoshka: keep the first N components, renormalized")
    user: StrictStr | None = None
    truncate: StrictBool = Field(True, description="Trident extension: cut inputs past the model's maximum")
    truncation_direction: Direction = "right"
    prompt_name: StrictStr | None = None
    task: StrictStr | None = Field(None, description="Jina's task: the LoRA adapter (and its instruction)")
    late_chunking: StrictBool = Field(False, description=LATE_CHUNKING)
    chunk_long_inputs: StrictBool | None = Field(None, description=CHUNK_LONG_INPUTS)

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> EmbedJob:
        return embedding_job(self, self.input, "input", spec, settings,
                             normalize=spec.normalize or self.dimensions is not None)


class EmbedRequest(InferenceBody):
    """TEI's `POST /embed`."""

    shapes = {"inputs": check.TEXT_OR_IDS}

    inputs: TextOrIds
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    normalize: StrictBool = True
    prompt_name: StrictStr | None = None
    dimensions: StrictInt | None = None
    task: StrictStr | None = Field(None, description="Jina's task: the LoRA adapter (and its instruction)")
    embedding_type: EmbeddingType = Field("float", description="Trident extension: Cohere's embedding types")
    late_chunking: StrictBool = Field(False, description=LATE_CHUNKING)
    chunk_long_inputs: StrictBool | None = Field(None, description=CHUNK_LONG_INPUTS)

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> EmbedJob:
        job = embedding_job(self, self.inputs, "inputs", spec, settings, normalize=self.normalize)
        check.check_embedding_types([self.embedding_type], spec, self.normalize, self.dimensions, "embedding_type")
        return job


class EmbedSparseRequest(InferenceBody):
    """TEI's `POST /embed_sparse` (SPLADE models): the non-zero entries of each vector, or the `top_k` largest."""

    shapes = {"inputs": check.TEXT_OR_IDS}

    inputs: TextOrIds
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    prompt_name: StrictStr | None = None
    top_k: StrictInt | None = Field(None, ge=1, description="Trident extension: keep the k largest entries")

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> SparseJob | HybridJob:
        """A SPLADE model's vectors; a hybrid model's lexical weights."""
        inputs = embedding_inputs(self, self.inputs, "inputs", spec, settings)
        if spec.task_row.hybrid:
            return HybridJob(**inputs, kinds=("sparse",), top_k=self.top_k)
        return SparseJob(**inputs, top_k=self.top_k)


class EmbedAllRequest(InferenceBody):
    """TEI's `POST /embed_all`: every token's vector, special tokens included, no pooling."""

    shapes = {"inputs": "a string or a list of strings"}

    inputs: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    prompt_name: StrictStr | None = None

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> TokensJob | MultiVectorJob | HybridJob:
        """An embedding model's hidden states; a multi-vector model's vectors, of the side `prompt_name` says; a
        hybrid model's ColBERT vectors."""
        texts = [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)
        check.check_texts(texts, "inputs")
        check.check_batch(len(texts), settings, "inputs")
        fields = {"characters": sum(map(len, texts)), "param": "inputs", **self.truncation_fields(settings)}
        if spec.task_row.hybrid:
            return HybridJob(texts=check.apply_prompt(texts, spec, self.prompt_name), kinds=("colbert",), **fields)
        if spec.task_row.multi_vector:
            prompted, side = check.side_and_prompt(texts, spec, self.prompt_name)
            return MultiVectorJob(texts=prompted, side=side, **fields)
        return TokensJob(texts=check.apply_prompt(texts, spec, self.prompt_name), **fields)


class EmbedHybridRequest(InferenceBody):
    """Trident's `POST /embed_hybrid`: a hybrid (BGE-M3) model's dense, sparse and ColBERT outputs of each input
    from one engine pass; other embedding models answer the one they have (400 naming what they lack)."""

    shapes = {"inputs": "a string or a list of strings"}

    inputs: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    return_dense: StrictBool = Field(True, description="the normalized dense vector (`dense`)")
    return_sparse: StrictBool = Field(True, description="the lexical weights, `[{\"index\", \"value\"}]` (`sparse`)")
    return_colbert: StrictBool = Field(False, description="the normalized ColBERT vectors (`colbert`)")
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> HybridJob | EmbedJob | SparseJob | MultiVectorJob:
        kinds = check.hybrid_kinds(spec, {"dense": self.return_dense, "sparse": self.return_sparse,
                                          "colbert": self.return_colbert})
        texts = [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)
        check.check_texts(texts, "inputs")
        check.check_batch(len(texts), settings, "inputs")
        fields = {"texts": check.apply_prompt(texts, spec, None), "characters": sum(map(len, texts)),
                  "param": "inputs", **self.truncation_fields(settings)}
        if spec.task_row.hybrid:
            return HybridJob(kinds=kinds, **fields)
        if kinds == ("sparse",):
            return SparseJob(**fields)
        if kinds == ("colbert",):
            return MultiVectorJob(side="", **fields)
        return EmbedJob(normalize=True, dimensions=None, model_normalizes=spec.normalize, **fields)


class SimilarityInputs(Lenient):
    source_sentence: StrictStr
    sentences: list[StrictStr]


class SimilarityRequest(InferenceBody):
    """TEI's `POST /similarity`: the cosine of the source sentence with each of the sentences."""

    inputs: SimilarityInputs
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    prompt_name: StrictStr | None = None

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> EmbedJob:
        source, sentences = self.inputs.source_sentence, self.inputs.sentences
        check.check_texts([source], "source_sentence")
        check.check_texts(sentences, "sentences")
        check.check_batch(len(sentences), settings, "sentences")
        texts = [source, *sentences]
        return EmbedJob(texts=check.apply_prompt(texts, spec, self.prompt_name), characters=sum(map(len, texts)),
                        param="sentences", **self.truncation_fields(settings), normalize=True, dimensions=None,
                        model_normalizes=spec.normalize)


CohereTruncate = Literal["NONE", "START", "END"]
InputType = Literal["search_query", "search_document", "classification", "clustering"]


class CohereContent(Lenient):
    type: Literal["text"] = Field(description="text only: Trident embeds no images")
    text: StrictStr


class CohereInput(Lenient):
    content: list[CohereContent]


class CohereEmbedRequest(InferenceBody):
    """Cohere's `POST /v2/embed`: `texts`, or `inputs` of one text content each. The vectors are always
    normalized (as Cohere's are); `input_type` picks the model's prompt of that kind."""

    texts: list[StrictStr] | None = None
    inputs: list[CohereInput] | None = None
    model: StrictStr | None = None
    input_type: InputType | None = None
    embedding_types: list[EmbeddingType] = Field(default_factory=lambda: ["float"], min_length=1)
    output_dimension: StrictInt | None = Field(None, description="Matryoshka: keep the first N components")
    truncate: CohereTruncate = "END"
    max_tokens: StrictInt | None = Field(None, ge=1, le=INT32_MAX,
                                         description="cut (or, with truncate NONE, refuse) inputs longer than "
                                         "this many tokens")
    chunk_long_inputs: StrictBool | None = Field(None, description=CHUNK_LONG_INPUTS)

    def input_texts(self) -> tuple[list[str], str]:
        """The texts and the field they came from."""
        if (self.texts is None) == (self.inputs is None):
            raise ApiError(ErrorKind.VALIDATION, "send either `texts` or `inputs`", param="texts")
        if self.texts is not None:
            return list(self.texts), "texts"
        for index, item in enumerate(self.inputs):
            if len(item.content) != 1:
                raise ApiError(ErrorKind.VALIDATION, f"`inputs` item {index} has {len(item.content)} "
                                     "content parts; Trident embeds one text per input", param="inputs")
        return [item.content[0].text for item in self.inputs], "inputs"

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> EmbedJob:
        texts, param = self.input_texts()
        check.check_texts(texts, param)
        check.check_batch(len(texts), settings, param)
        check.check_dimensions(self.output_dimension, spec, "output_dimension")
        types = self.embedding_types
        check.check_embedding_types(types, spec, normalized=True, dimensions=self.output_dimension,
                                    param="embedding_types")
        inputs = {"texts": check.prompt_for_input_type(texts, spec, self.input_type)}
        # max_tokens asks for a cut: the server's --chunk-long-inputs default gives way to it
        chunk_long = self.chunk_long_inputs if self.max_tokens is None else bool(self.chunk_long_inputs)
        layout = laid_out(self, texts, spec, settings, inputs, False, chunk_long)
        if layout and self.max_tokens is not None:
            raise ApiError(ErrorKind.VALIDATION, "max_tokens cuts inputs and chunk_long_inputs embeds them whole: "
                           "send one of them", param="max_tokens")
        return EmbedJob(**{**inputs, **layout}, characters=sum(map(len, texts)), param=param,
                        truncate=self.truncate != "NONE", truncate_left=self.truncate == "START",
                        max_tokens=self.max_tokens, normalize=True, dimensions=self.output_dimension,
                        model_normalizes=spec.normalize)


def rerank_job(body: RerankRequest | CohereRerankRequest | CohereV2RerankRequest, documents: list[str], param: str,
               spec: ModelSpec, settings: GatewaySettings, raw_scores: bool, max_tokens: int | None = None) -> ScoreJob:
    check.check_texts([body.query], "query")
    check.check_texts(documents, param)
    check.check_batch(len(documents), settings, param)
    texts, pairs = check.rerank_inputs(spec, body.query, documents, body.instruction)
    return ScoreJob(texts=texts, pairs=pairs, param=param,
                    **body.truncation_fields(settings), max_tokens=max_tokens, raw_scores=raw_scores,
                    characters=len(body.query) * len(documents) + sum(map(len, documents)))


def maxsim_jobs(body: RerankRequest | CohereRerankRequest | CohereV2RerankRequest, documents: list[str], param: str,
                spec: ModelSpec, settings: GatewaySettings, max_tokens: int | None = None
                ) -> tuple[MultiVectorJob, MultiVectorJob]:
    """A multi-vector model reranks by MaxSim: the query's vectors (its query side) against each document's."""
    check.check_texts([body.query], "query")
    check.check_texts(documents, param)
    check.check_batch(len(documents), settings, param)
    truncation = body.truncation_fields(settings)
    query = MultiVectorJob(texts=check.side_and_prompt([body.query], spec, "query")[0], side="query", param="query",
                           characters=len(body.query), **truncation)
    return query, MultiVectorJob(texts=check.side_and_prompt(documents, spec, "document")[0], side="document",
                                 param=param, characters=sum(map(len, documents)), max_tokens=max_tokens, **truncation)


def hybrid_rerank_jobs(body: RerankRequest | CohereRerankRequest | CohereV2RerankRequest, documents: list[str],
                       param: str, spec: ModelSpec, settings: GatewaySettings, max_tokens: int | None = None
                       ) -> tuple[HybridJob, HybridJob]:
    """A hybrid model reranks as FlagEmbedding's compute_score: the query's and each document's three outputs
    (each document scored as if alone: never against another's padding)."""
    check.check_texts([body.query], "query")
    check.check_texts(documents, param)
    check.check_batch(len(documents), settings, param)
    truncation, kinds = body.truncation_fields(settings), tuple(HYBRID_KINDS)
    query = HybridJob(texts=check.apply_prompt([body.query], spec, None), kinds=kinds, param="query",
                      characters=len(body.query), **truncation)
    return query, HybridJob(texts=check.apply_prompt(documents, spec, None), kinds=kinds, param=param,
                            characters=sum(map(len, documents)), max_tokens=max_tokens, **truncation)


WEIGHTS = ("Trident extension, hybrid (BGE-M3) models: [dense, sparse, colbert], FlagEmbedding's "
           "weights_for_different_modes (default [1, 1, 1])")
SCORES = "Trident extension, hybrid (BGE-M3) models: add `scores` {dense, sparse, colbert} beside the combined score"


class RerankRequest(InferenceBody):
    """TEI's `POST /rerank` (what the Baseten Performance Client sends)."""

    query: StrictStr
    texts: list[StrictStr]
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    instruction: StrictStr | None = Field(None, description="LLM rerankers: the task instruction of the prompt")
    weights: list[StrictFloat] | None = Field(None, description=WEIGHTS)
    scores: StrictBool = Field(False, description=SCORES)

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> ScoreJob:
        return rerank_job(self, self.texts, "texts", spec, settings, self.raw_scores)

    def to_maxsim_jobs(self, spec: ModelSpec, settings: GatewaySettings) -> tuple[MultiVectorJob, MultiVectorJob]:
        return maxsim_jobs(self, self.texts, "texts", spec, settings)

    def to_hybrid_jobs(self, spec: ModelSpec, settings: GatewaySettings) -> tuple[HybridJob, HybridJob]:
        return hybrid_rerank_jobs(self, self.texts, "texts", spec, settings)


class DocumentText(Lenient):
    text: StrictStr


class CohereRerankRequest(InferenceBody):
    """Cohere / Jina `POST /v1/rerank`: documents as strings or `{"text": ...}` objects."""

    query: StrictStr
    documents: list[StrictStr | DocumentText]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1, description="Keep the N best documents (default: all)")
    return_documents: StrictBool = False
    truncate: StrictBool = Field(True, description="Trident extension: cut pairs past the model's maximum")
    truncation_direction: Direction = "right"
    instruction: StrictStr | None = Field(None, description="LLM rerankers: the task instruction of the prompt")
    weights: list[StrictFloat] | None = Field(None, description=WEIGHTS)
    scores: StrictBool = Field(False, description=SCORES)

    def document_texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> ScoreJob:
        return rerank_job(self, self.document_texts(), "documents", spec, settings, raw_scores=False)

    def to_maxsim_jobs(self, spec: ModelSpec, settings: GatewaySettings) -> tuple[MultiVectorJob, MultiVectorJob]:
        return maxsim_jobs(self, self.document_texts(), "documents", spec, settings)

    def to_hybrid_jobs(self, spec: ModelSpec, settings: GatewaySettings) -> tuple[HybridJob, HybridJob]:
        return hybrid_rerank_jobs(self, self.document_texts(), "documents", spec, settings)


class CohereV2RerankRequest(InferenceBody):
    """Cohere's `POST /v2/rerank`: documents as strings; pairs are cut to fit the model, each document first
    to `max_tokens_per_doc` tokens when given."""

    query: StrictStr
    documents: list[StrictStr]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1, description="Keep the N best documents (default: all)")
    max_tokens_per_doc: StrictInt | None = Field(None, ge=1, le=INT32_MAX)
    instruction: StrictStr | None = Field(None, description="LLM rerankers: the task instruction of the prompt")
    weights: list[StrictFloat] | None = Field(None, description=WEIGHTS)
    scores: StrictBool = Field(False, description=SCORES)

    def truncation_fields(self, settings: GatewaySettings) -> dict[str, bool]:
        return {"truncate": True, "truncate_left": False}  # Cohere always cuts what does not fit

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> ScoreJob:
        return rerank_job(self, self.documents, "documents", spec, settings, raw_scores=False,
                          max_tokens=self.max_tokens_per_doc)

    def to_maxsim_jobs(self, spec: ModelSpec, settings: GatewaySettings) -> tuple[MultiVectorJob, MultiVectorJob]:
        return maxsim_jobs(self, self.documents, "documents", spec, settings, self.max_tokens_per_doc)

    def to_hybrid_jobs(self, spec: ModelSpec, settings: GatewaySettings) -> tuple[HybridJob, HybridJob]:
        return hybrid_rerank_jobs(self, self.documents, "documents", spec, settings, self.max_tokens_per_doc)


class PredictRequest(InferenceBody):
    """TEI's `POST /predict`: `inputs` is a string, a pair or a batch (see validation.parse_predict_inputs)."""

    inputs: Any
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = False

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> ScoreJob:
        items, batched = check.parse_predict_inputs(self.inputs)
        texts, pairs = [text for text, _ in items], [pair for _, pair in items]
        check.check_texts(texts, "inputs")
        check.check_texts(pairs, "inputs")
        if spec.rerank_prompt and None not in pairs:  # an LLM reranker scores its prompt, with the default task
            texts = [check.rerank_inputs(spec, text, [pair], None)[0][0] for text, pair in items]
            pairs = [None] * len(items)
        check.check_batch(len(items), settings, "inputs")
        return ScoreJob(texts=texts, pairs=pairs, param="inputs", **self.truncation_fields(settings),
                        raw_scores=self.raw_scores, batched=batched,
                        characters=sum(len(t) + len(p or "") for t, p in items))


AggregationStrategy = Literal["none", "simple", "first", "average", "max"]


class PredictTokensRequest(InferenceBody):
    """BEI's `POST /predict_tokens` (NER): `inputs` is a batch `[[text, ...]]`, a list of texts or one text."""

    inputs: Any
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = False
    aggregation_strategy: AggregationStrategy | None = None

    @field_validator("aggregation_strategy", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> NerJob:
        texts = check.parse_ner_inputs(self.inputs)
        check.check_texts(texts, "inputs")
        check.check_batch(len(texts), settings, "inputs")
        return NerJob(texts=texts, param="inputs", **self.truncation_fields(settings),
                      strategy=self.aggregation_strategy or "none", raw_scores=self.raw_scores,
                      characters=sum(map(len, texts)))


class TokenizeRequest(Lenient):  # TEI's `POST /tokenize`
    shapes = {"inputs": "a string or a list of strings"}

    inputs: StrictStr | list[StrictStr]
    add_special_tokens: StrictBool = True
    prompt_name: StrictStr | None = None
    model: StrictStr | None = None

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> TokenizeJob:
        texts = [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)
        check.check_batch(len(texts), settings, "inputs")
        check.check_texts(texts, "inputs", empty_ok=True)  # "" is [CLS] [SEP], as TEI answers
        characters = sum(map(len, texts))
        return TokenizeJob(check.apply_prompt(texts, spec, self.prompt_name), self.add_special_tokens, characters)


class DecodeRequest(Lenient):  # TEI's `POST /decode`
    ids: list[StrictInt] | list[list[StrictInt]]
    skip_special_tokens: StrictBool = True
    model: StrictStr | None = None

    def to_job(self, spec: ModelSpec, settings: GatewaySettings) -> DecodeJob:
        single = bool(self.ids) and isinstance(self.ids[0], int)
        sequences = [list(self.ids)] if single else [list(ids) for ids in self.ids]
        check.check_batch(len(sequences), settings, "ids")
        return DecodeJob(sequences, self.skip_special_tokens)
