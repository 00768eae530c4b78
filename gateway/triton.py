"""Triton gRPC calls with a deadline, and Triton's failures turned into gateway errors."""

from __future__ import annotations

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from gateway.errors import ApiError, ErrorKind
from gateway.observe import current_request_id, triton_call
from gateway.registry import Discovery
from gateway.wire import infer_request, response_arrays
from trident import errors as stage_errors
from trident.errors import StageErrorKind
from trident.spec import MANIFEST_PARAMETER, ModelSpec

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
STATUSES = {str(code): code for code in grpc.StatusCode}  # tritonclient gives the status as "StatusCode.X"
# Untagged failures (Triton's own, not a stage's) for which the client should retry, measured with Triton
# 2.51: DEADLINE_EXCEEDED / CANCELLED (no answer in time), NOT_FOUND (the gateway only calls models Triton
# listed, so a missing one is being unloaded: "has no available versions" while Triton exits), INTERNAL
# (a Python stub died, "Stub process ... is not healthy": Triton never recovers it, the supervisor
# restarts Triton). UNAVAILABLE (refused, reset, "Server is stopping") is TritonUnreachable.
RETRYABLE = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED, grpc.StatusCode.NOT_FOUND,
             grpc.StatusCode.INTERNAL)


class TritonUnreachable(ApiError):
    """503 because the endpoint did not answer at all (refused, reset): another endpoint may."""


def translate(exc: InferenceServerException, offset: int = 0, param: str = "input") -> ApiError:
    """Triton's error -> the error a client should see, by the stage's tagged kind or else the gRPC status.

    `offset` maps a sub-request's input index back to the request's; `param` names the request field.
    """
    message = exc.message() or str(exc)
    refusal = stage_errors.decode(message)
    if refusal is not None:
        if refusal.kind is StageErrorKind.STAGE_FAILED:
            return ApiError(ErrorKind.BACKEND_FAILED, f"the inference server failed: {refusal.message}")
        details = refusal.details
        if refusal.kind is StageErrorKind.INPUT_TOO_LONG and {"index", "num_tokens", "max_length"} <= details.keys():
            return ApiError(ErrorKind.VALIDATION, stage_errors.too_long_message(
                details["index"] + offset, details["num_tokens"], details["max_length"]), param=param)
        return ApiError(ErrorKind.VALIDATION, refusal.message, param=param)
    status = STATUSES.get(exc.status() or "")
    if status is grpc.StatusCode.UNAVAILABLE:
        return TritonUnreachable(ErrorKind.UNAVAILABLE, f"the inference server is unavailable: {message}")
    if status in RETRYABLE:  # a deadline names the flag that sets it
        what = ("no answer from the inference server within the gateway's --request-timeout"
                if status is grpc.StatusCode.DEADLINE_EXCEEDED else "the inference server is unavailable")
        return ApiError(ErrorKind.UNAVAILABLE, f"{what}: {message}")
    # What is left is Triton refusing the request the gateway built (INVALID_ARGUMENT untagged: a tensor
    # the ensemble does not take) or a status Triton does not send for inference.
    return ApiError(ErrorKind.BACKEND_FAILED, f"the inference server failed: {message}")


class TritonBackend:
    def __init__(self, url: str, timeout_s: float, server_id: str | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.server_id = server_id  # when set, only a server answering with this id counts as ready
        self._client: grpcclient.InferenceServerClient | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None

    @property
    def client(self) -> grpcclient.InferenceServerClient:
        """For readiness and discovery. Created on first use, inside the event loop that serves requests
        (gRPC aio needs that)."""
        if self._client is None:
            self._client = grpcclient.InferenceServerClient(self.url, channel_args=CHANNEL_ARGS)
        return self._client

    @property
    def stub(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        """For inference: the raw stub over a channel of its own (`gateway.wire` builds the messages)."""
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.url, options=CHANNEL_ARGS)
            self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

    async def infer(
        self, model: str, tensors: dict[str, np.ndarray], outputs: tuple[str, ...], offset: int = 0,
        param: str = "input", priority: int = 0,
    ) -> dict[str, np.ndarray]:
        """One Triton call at Triton's `priority` level; a failure is raised translated (`offset` and `param`:
        see `translate`)."""
        request = infer_request(model, tensors, outputs, current_request_id() or "", priority)
        try:
            with triton_call(model):
                response = await self.stub.ModelInfer(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:  # as tritonclient words it: the status as "StatusCode.X", the details
            raise translate(InferenceServerException(exc.details(), str(exc.code())), offset, param) from None
        return response_arrays(response)

    async def ready(self) -> bool:
        try:
            if not await self.client.is_server_ready(client_timeout=2.0):
                return False
            if self.server_id is None:
                return True
            metadata = await self.client.get_server_metadata(as_json=True, client_timeout=2.0)
            return metadata.get("name") == self.server_id
        except InferenceServerException:
            return False

    async def discover(self) -> Discovery:
        """Every Trident ensemble Triton serves, read from the manifest in its config, and every ready model."""
        index = await self.client.get_model_repository_index(as_json=True, client_timeout=5.0)
        specs, ready = [], set()
        for entry in index.get("models", []):
            if entry.get("state") != "READY":
                continue
            ready.add(entry["name"])
            config = (await self.client.get_model_config(entry["name"], as_json=True, client_timeout=5.0))["config"]
            manifest = config.get("parameters", {}).get(MANIFEST_PARAMETER, {}).get("string_value")
            if manifest and config.get("platform") == "ensemble":
                spec = ModelSpec.from_json(manifest)
                if spec.name == entry["name"]:  # not `<name>_ids`, the same model's token-id ensemble
                    specs.append(spec)
        return Discovery(specs, frozenset(ready))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._channel is not None:
            await self._channel.close()
