"""The one piece of glue between Triton's Python backend and the plain stages in `trident.stages`.

Each `model_repository/*/model.py` is a subclass that names its stage and tensors; this class reads
the manifest from the model's config, moves tensors in and out, and turns a stage's exception into
that request's error (tagged: `trident.errors`) without failing the others of the batch.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

from trident.errors import StageError, StageErrorKind, encode
from trident.priorities import NICE_PARAMETER, lower_os_priority
from trident.spec import MANIFEST_PARAMETER, ModelSpec
from trident.stages import REQUESTED_OUTPUTS


class StageModel:
    """`input_names` / `output_names` left empty mean "the tensors config.pbtxt declares": one model.py
    then serves every task, whose configs declare different tensors."""

    stage_class: type
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.input_names = self.input_names or tuple(t["name"] for t in config.get("input", []))
        self.output_names = self.output_names or tuple(t["name"] for t in config.get("output", []))
        spec = ModelSpec.from_json(config["parameters"][MANIFEST_PARAMETER]["string_value"])
        if NICE_PARAMETER in config["parameters"]:  # a bulk lane's step: before its runtime starts threads
            lower_os_priority(int(config["parameters"][NICE_PARAMETER]["string_value"]))
        use_instance_gpu(args)
        files = Path(args["model_repository"]) / args["model_version"]
        self.stage = self.stage_class(spec, files)
        # What the stub loaded (numpy, the tokenizer, the engine's runtime) stays out of the collector's walks:
        # a full collection pauses every request of the batch being handled.
        gc.collect()
        gc.freeze()

    def execute(self, requests: list) -> list:
        """Responses in request order. A request whose client gave up while it was queued (Triton marks it
        cancelled: a hang-up, or the gateway's deadline) is answered CANCELLED without any work: Triton's
        Python backend hands queued requests over even when they are cancelled. Stages whose work per
        request is cheaper than asking (`skips_cancelled = False`) just do it."""
        import triton_python_backend_utils as pb_utils

        # Asking costs a round trip to tritonserver per request: only a stage whose work costs more asks.
        check = getattr(self.stage, "skips_cancelled", True)
        live = [i for i, request in enumerate(requests) if not (check and request.is_cancelled())]
        responses = [pb_utils.InferenceResponse(  # one object per request: the backend frees each one
            error=pb_utils.TritonError("cancelled while queued", pb_utils.TritonError.CANCELLED))
            for _ in requests]
        batch = [self._request(pb_utils, requests[i]) for i in live]
        try:
            results = self.stage.process(batch) if batch else []
        except Exception as exc:  # the whole batch failed (an engine error): every request hears why
            results = [as_stage_error(exc)] * len(batch)
        for index, result in zip(live, results, strict=True):
            responses[index] = self._response(pb_utils, result)
        return responses

    def _request(self, pb_utils, request) -> dict:
        """The request's inputs by name, and the outputs its ensemble maps (REQUESTED_OUTPUTS)."""
        tensors = {name: _as_numpy(pb_utils.get_input_tensor_by_name(request, name)) for name in self.input_names}
        tensors[REQUESTED_OUTPUTS] = tuple(request.requested_output_names())
        return tensors

    def _response(self, pb_utils, result: dict | Exception):
        if isinstance(result, Exception):
            error = as_stage_error(result)
            code = pb_utils.TritonError.INVALID_ARG if error.client_fault else pb_utils.TritonError.INTERNAL
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(encode(error), code))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, result[name])
                                                          for name in self.output_names if name in result])


def use_instance_gpu(args: dict) -> None:
    """An instance Triton placed on a GPU (`trident serve --gpus`: one instance group per GPU) computes on that
    GPU: it becomes the stub's current CUDA device, which the engines' `cuda` means. Unrun: no GPU was lent."""
    if args.get("model_instance_kind") != "GPU":
        return
    import torch

    torch.cuda.set_device(int(args["model_instance_device_id"]))


def as_stage_error(exc: Exception) -> StageError:
    """A stage's refusal as it is; anything else is the stage's own failure, named with its type."""
    if isinstance(exc, StageError):
        return exc
    return StageError(StageErrorKind.STAGE_FAILED, f"{type(exc).__name__}: {exc}")


def _as_numpy(tensor):
    return None if tensor is None else tensor.as_numpy()
