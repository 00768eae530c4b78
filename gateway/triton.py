"""Triton gRPC calls with a deadline, and Triton's failures turned into gateway errors."""

from __future__ import annotations

import re

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.errors import ApiError
from trident.spec import MANIFEST_PARAMETER, ModelSpec

INPUT_TOO_LONG = re.compile(r"input (\d+) has (\d+) tokens, more than the model's maximum of (\d+)")
UNREACHABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")


def bytes_input(name: str, values: list[str]) -> grpcclient.InferInput:
    array = np.array([v.encode("utf-8") for v in values], dtype=np.object_).reshape(-1, 1)
    tensor = grpcclient.InferInput(name, list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    return tensor


def column_input(name: str, value: bool | int, n: int, datatype: str) -> grpcclient.InferInput:
    dtype = {"BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64}[datatype]
    array = np.full((n, 1), value, dtype=dtype)
    tensor = grpcclient.InferInput(name, [n, 1], datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def array_input(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def translate(exc: InferenceServerException, offset: int = 0) -> ApiError:
    """Triton's error -> the status a client should see. `offset` maps sub-request indices back."""
    message = exc.message() or str(exc)
    too_long = INPUT_TOO_LONG.search(message)
    if too_long:
        index, tokens, limit = (int(g) for g in too_long.groups())
        return ApiError(
            422,
            f"input {index + offset} has {tokens} tokens, more than the model's maximum of {limit}; "
            "send truncate=true to cut it",
            param="input",
        )
    if exc.status() in UNREACHABLE:
        return ApiError(503, f"the inference server is unavailable: {message}")
    return ApiError(424, f"the inference server failed: {message}")


class TritonBackend:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client: grpcclient.InferenceServerClient | None = None

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        """Created on first use, inside the event loop that serves requests (gRPC aio needs that)."""
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url)
        return self._client

    async def infer(
        self, model: str, inputs: list[grpcclient.InferInput], outputs: list[str], offset: int = 0
    ) -> dict[str, np.ndarray]:
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        try:
            result = await self.client.infer(model, inputs, outputs=requested, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise translate(exc, offset) from None
        return {name: result.as_numpy(name) for name in outputs}

    async def ready(self) -> bool:
        try:
            return bool(await self.client.is_server_ready(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def discover(self) -> list[ModelSpec]:
        """Every Trident ensemble Triton serves, read from the manifest in its config."""
        index = await self.client.get_model_repository_index(as_json=True, client_timeout=5.0)
        specs = []
        for entry in index.get("models", []):
            if entry.get("state") != "READY":
                continue
            config = (await self.client.get_model_config(entry["name"], as_json=True, client_timeout=5.0))["config"]
            manifest = config.get("parameters", {}).get(MANIFEST_PARAMETER, {}).get("string_value")
            if manifest and config.get("platform") == "ensemble":
                specs.append(ModelSpec.from_json(manifest))
        return specs

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
