"""Request bodies as clients send them, validated by pydantic (strict: no silent coercion)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

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
