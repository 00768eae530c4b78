"""Triton gRPC calls with a deadline, and Triton's failures turned into gateway errors."""

from __future__ import annotations

import re

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.errors import ApiError
from gateway.observe import current_request_id, triton_call
from trident.spec import MANIFEST_PARAMETER, ModelSpec

INPUT_TOO_LONG = re.compile(r"input (\d+) has (\d+) tokens, more than the model's maximum of (\d+)")
# A Python backend stub died (Triton never recovers it alone), or Triton is unloading its models to
# exit: either way the supervisor is restarting it, so the client should retry (503), not give up.
TRANSIENT = ("is not healthy", "has no available versions")
UNREACHABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")
# tritonclient's own message limits, plus reconnect attempts at least once a second: gRPC's default
# backoff grows to 2 minutes, which would keep answering 503 long after a restarted Triton is back.
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A name resolving to several addresses (a Kubernetes headless Service) spreads over all of them.
    ("grpc.lb_policy_name", "round_robin"),
]


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


class TritonUnreachable(ApiError):
    """503 because the endpoint did not answer at all (refused, reset): another endpoint may."""


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
    if exc.status() == "StatusCode.UNAVAILABLE":
        return TritonUnreachable(503, f"the inference server is unavailable: {message}")
    if exc.status() in UNREACHABLE or any(fragment in message for fragment in TRANSIENT):
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
            self._client = grpcclient.InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
        return self._client

    async def infer(
        self, model: str, inputs: list[grpcclient.InferInput], outputs: list[str], offset: int = 0
    ) -> dict[str, np.ndarray]:
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        try:
            with triton_call(model):
                result = await self.client.infer(model, inputs, outputs=requested, client_timeout=self.timeout_s,
                                                 request_id=current_request_id() or "")
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
