"""`POST /tokenize` and `POST /decode` (TEI), with the served model's own tokenizer."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.observe import note_usage
from gateway.responses import json_response
from gateway.schemas import DecodeRequest, TokenizeRequest
from gateway.validation import check_token_ids
from trident.tokenization import TextTokenizer

router = APIRouter()


class SimpleToken(BaseModel):
    id: int
    text: str
    special: bool
    start: int | None = None
    stop: int | None = None


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
    job = body.to_job(spec, gateway.settings)
    tokenizer = await asyncio.to_thread(request.app.state.tokenizers.get, spec)
    started = time.perf_counter()
    tokens = await asyncio.to_thread(lambda: [tokens_of(tokenizer, t, job.add_special_tokens) for t in job.texts])
    note_usage(model=spec.name, inputs=len(job.texts), tokens=sum(len(t) for t in tokens), characters=job.characters,
               tokenization_s=time.perf_counter() - started)
    return json_response(tokens)


@router.post("/decode", tags=["TEI"], responses={200: {"model": list[str]}, **NO_TOKENIZER})
async def decode(body: DecodeRequest, request: Request) -> Response:
    """One string per id list (a single list of ids gives a list of one string)."""
    gateway = request.app.state.gateway
    spec = gateway.registry.pick(body.model)
    job = body.to_job(spec, gateway.settings)
    tokenizer = await asyncio.to_thread(request.app.state.tokenizers.get, spec)
    check_token_ids(job.sequences, tokenizer.vocab_size, "ids", empty_ok=True)  # the file's own vocabulary
    texts = await asyncio.to_thread(lambda: [tokenizer.decode(ids, job.skip_special_tokens) for ids in job.sequences])
    note_usage(model=spec.name, inputs=len(job.sequences))
    return json_response(texts)
