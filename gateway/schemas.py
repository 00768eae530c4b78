"""Request bodies as clients send them, validated by pydantic (strict: no silent coercion)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

Direction = Literal["right", "left", "Right", "Left"]
TextOrIds = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class Lenient(BaseModel):
    # Clients send fields of their own (OpenAI's `user`, SDK extras): ignore what we do not use.
    model_config = ConfigDict(extra="ignore")


class OpenAIEmbeddingRequest(Lenient):
    input: TextOrIds = Field(description="A string, a list of strings, a list of token ids or a list of those")
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(None, description="Matryoshka: keep the first N components, renormalized")
    user: StrictStr | None = None
    truncate: StrictBool = Field(True, description="Trident extension: cut inputs past the model's maximum")
    truncation_direction: Direction = "right"
    prompt_name: StrictStr | None = None


class EmbedRequest(Lenient):
    """TEI's `POST /embed`."""

    inputs: TextOrIds
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    normalize: StrictBool = True
    prompt_name: StrictStr | None = None
    dimensions: StrictInt | None = None


class RerankRequest(Lenient):
    """TEI's `POST /rerank` (what the Baseten Performance Client sends)."""

    query: StrictStr
    texts: list[StrictStr]
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = False
    return_text: StrictBool = False


class DocumentText(Lenient):
    text: StrictStr


class CohereRerankRequest(Lenient):
    """Cohere / Jina `POST /v1/rerank`: documents as strings or `{"text": ...}` objects."""

    query: StrictStr
    documents: list[StrictStr | DocumentText]
    model: StrictStr | None = None
    top_n: StrictInt | None = Field(None, ge=1, description="Keep the N best documents (default: all)")
    return_documents: StrictBool = False
    truncate: StrictBool = Field(True, description="Trident extension: cut pairs past the model's maximum")
    truncation_direction: Direction = "right"


class PredictRequest(Lenient):
    """TEI's `POST /predict`: `inputs` is checked by the route (string, pair or batch; see gateway.scoring)."""

    inputs: Any
    model: StrictStr | None = None
    truncate: StrictBool | None = None
    truncation_direction: Direction = "right"
    raw_scores: StrictBool = False


AggregationStrategy = Literal["none", "simple", "first", "average", "max"]


class PredictTokensRequest(Lenient):
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
