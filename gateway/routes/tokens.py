"""`POST /tokenize` and `POST /decode` (TEI), with the served model's own tokenizer."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr
from starlette.responses import Response

from gateway.embedding import apply_prompt
from gateway.errors import ApiError
from gateway.observe import note_usage
from gateway.responses import json_response
from gateway.settings import GatewaySettings
from trident.tokenization import TextTokenizer

router = APIRouter()


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputs: StrictStr | list[StrictStr]
    add_special_tokens: StrictBool = True
    prompt_name: StrictStr | None = None
    model: StrictStr | None = None


class DecodeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: list[StrictInt] | list[list[StrictInt]]
    skip_special_tokens: StrictBool = True
    model: StrictStr | None = None


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = None
    stop: int | None = None


def check_batch(count: int, settings: GatewaySettings, param: str) -> None:
    if count == 0:
        raise ApiError(400, f"`{param}` must not be empty", param=param)
    if count > settings.max_client_batch_size:
        raise ApiError(413, f"{count} inputs in one request; the limit is {settings.max_client_batch_size} "
                       "(--max-client-batch-size)", param=param)


def check_unicode(texts: list[str]) -> None:
    for index, text in enumerate(texts):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(400, f"`inputs` item {index} is not valid Unicode (lone surrogate)",
                           param="inputs") from None


def tokens_of(tokenizer: TextTokenizer, text: str, add_special_tokens: bool) -> list[dict[str, object]]:
    """TEI's shape: special tokens carry their token text and no offsets; others the slice of the
    input they cover, with character offsets."""
    encoding = tokenizer.tokenize(text, add_special_tokens)
    tokens = []
    for token_id, token, (start, stop), special in zip(
        encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask, strict=True
    ):
        if special:
            tokens.append({"id": token_id, "text": token, "special": True, "start": None, "stop": None})
        else:
            tokens.append({"id": token_id, "text": text[start:stop], "special": False, "start": start, "stop": stop})
    return tokens


NO_TOKENIZER = {501: {"description": "the gateway lacks this model's tokenizer file"}}


@router.post("/tokenize", tags=["TEI"], responses={200: {"model": list[list[SimpleToken]]}, **NO_TOKENIZER})
async def tokenize(body: TokenizeRequest, request: Request) -> Response:
    """One list of tokens per input (a single string gives a list of one list)."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model)
    texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
    check_batch(len(texts), gateway.settings, "inputs")
    check_unicode(texts)
    characters = sum(len(text) for text in texts)
    texts = apply_prompt(texts, spec, body.prompt_name)
    tokenizer = await asyncio.to_thread(request.app.state.tokenizers.get, spec)
    started = time.perf_counter()
    tokens = await asyncio.to_thread(lambda: [tokens_of(tokenizer, t, body.add_special_tokens) for t in texts])
    note_usage(model=spec.name, inputs=len(texts), tokens=sum(len(t) for t in tokens), characters=characters,
               tokenization_s=time.perf_counter() - started)
    return json_response(tokens)


@router.post("/decode", tags=["TEI"], responses={200: {"model": list[str]}, **NO_TOKENIZER})
async def decode(body: DecodeRequest, request: Request) -> Response:
    """One string per id list (a single list of ids gives a list of one string)."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model)
    single = bool(body.ids) and isinstance(body.ids[0], int)
    sequences = [list(body.ids)] if single else [list(ids) for ids in body.ids]
    check_batch(len(sequences), gateway.settings, "ids")
    tokenizer = await asyncio.to_thread(request.app.state.tokenizers.get, spec)
    for index, ids in enumerate(sequences):
        bad = next((i for i in ids if not 0 <= i < tokenizer.vocab_size), None)
        if bad is not None:
            raise ApiError(422, f"`ids` item {index} has token id {bad}, outside the vocabulary "
                           f"[0, {tokenizer.vocab_size})", param="ids")
    texts = await asyncio.to_thread(lambda: [tokenizer.decode(ids, body.skip_special_tokens) for ids in sequences])
    note_usage(model=spec.name, inputs=len(sequences))
    return json_response(texts)
