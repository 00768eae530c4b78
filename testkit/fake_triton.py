"""An in-process fake of Triton's gRPC endpoint: the gateway talks to it exactly as to tritonserver.

It serves a model repository written by the real repository writer (`builder.repository`): every
`config.pbtxt` is parsed into Triton's own `ModelConfig` message, ensembles run step by step along
their `input_map` / `output_map`, and each Python-backend model is the `TritonPythonModel` of its
copied `<model>/1/model.py`, run through the real adapter (`trident.triton_adapter.StageModel`) over
a small stand-in for `triton_python_backend_utils`. So the real tokenizer and postprocess stages run,
and their refusals reach the client as the real adapter sends them. Only the engine is fake:
`FakeEngine`, a deterministic numpy function of the token ids (no torch, no ONNX).

What Triton itself says is copied from tritonserver 2.51: a step's error arrives with its own gRPC
status and message, prefixed "in ensemble '<name>', " when it came through an ensemble; an unknown model
is NOT_FOUND "Request for unknown model: 'x' is not found"; inputs that do not match the config are
INVALID_ARGUMENT. Outputs travel as raw_output_contents, only those requested (all when none are), in
the datatypes the configs declare (a stage answering another datatype fails loudly: INTERNAL, "fake triton").

Faults, for the failure paths: `inject(Fault(...))` answers errors (UNAVAILABLE, an untagged INTERNAL
"Stub process ... is not healthy", anything), `hung()` freezes the server (or one model) like SIGSTOP,
`ready = False` flips readiness, `stop()` / `start()` close and reopen the port.

    with FakeTriton([repository]) as fake:
        settings = GatewaySettings(triton_urls=[fake.url])
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
import threading
import types
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import text_format
from google.protobuf.json_format import MessageToJson
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor, triton_to_np_dtype

from trident import tensors as T
from trident.priorities import NICE_PARAMETER
from trident.spec import MANIFEST_PARAMETER, ModelSpec
from trident.stages import EngineStage

VERSION = "1"
UNHEALTHY = ("Failed to process the request(s) for model '{instance}', message: "
             "Stub process '{instance}' is not healthy.")


# --- triton_python_backend_utils, the part the adapter uses ------------------------------------------


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


# The gRPC status Triton answers for each TritonError code of a Python-backend response.
GRPC_STATUS = {
    TritonError.UNKNOWN: grpc.StatusCode.UNKNOWN, TritonError.INTERNAL: grpc.StatusCode.INTERNAL,
    TritonError.NOT_FOUND: grpc.StatusCode.NOT_FOUND, TritonError.INVALID_ARG: grpc.StatusCode.INVALID_ARGUMENT,
    TritonError.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE, TritonError.UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    TritonError.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS, TritonError.CANCELLED: grpc.StatusCode.CANCELLED,
}


class InferenceRequest:
    def __init__(self, tensors: list[Tensor], cancelled: bool = False, requested: list[str] | None = None) -> None:
        self._tensors, self._cancelled, self._requested = tensors, cancelled, list(requested or [])

    def inputs(self) -> list[Tensor]:
        return self._tensors

    def requested_output_names(self) -> list[str]:
        return self._requested

    def is_cancelled(self) -> bool:  # the fake runs each request at once, so only a test makes one cancelled
        return self._cancelled


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None) -> None:
        self._outputs, self._error = list(output_tensors or []), error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


def _by_name(tensors: list[Tensor], name: str) -> Tensor | None:
    return next((t for t in tensors if t.name() == name), None)


def pb_utils_module() -> types.ModuleType:
    """`triton_python_backend_utils` as the Python backend's stub provides it; installed in sys.modules
    (only where no real one is: outside Triton there never is) so `StageModel.execute` imports it."""
    existing = sys.modules.get("triton_python_backend_utils")
    if existing is not None:
        return existing
    module = types.ModuleType("triton_python_backend_utils", "trident's in-process stand-in (testkit.fake_triton)")
    module.Tensor, module.TritonError = Tensor, TritonError
    module.InferenceRequest, module.InferenceResponse = InferenceRequest, InferenceResponse
    module.get_input_tensor_by_name = lambda request, name: _by_name(request.inputs(), name)
    module.get_output_tensor_by_name = lambda response, name: _by_name(response.output_tensors(), name)
    sys.modules[module.__name__] = module
    return module


# --- the engine ----------------------------------------------------------------------------------------


class FakeEngine:
    """Deterministic stand-in for the ONNX engine, same contract (`EngineStage` calls `run`).

    Each token id picks a row of a fixed random table (seeded by the model's name), token types add a
    fixed vector: pooled vectors and sequence logits are the mean of those rows, NER logits and token
    embeddings the rows themselves. A sparse (SPLADE) model's vector has a value only at the ids of its
    tokens (0.5 + id % 7 / 10). Ids outside `rows` (the manifest's vocabulary unless told otherwise) fail as
    ONNX Runtime's Gather does, inside the engine: the engine-failure path.
    """

    BUCKETS = 1009

    def __init__(self, spec: ModelSpec, rows: int | None = None) -> None:
        self.spec = spec
        self.rows = rows if rows is not None else spec.vocab_size
        task = spec.task_row
        vectors = task.vectors
        width = spec.dim if vectors else spec.num_labels
        rng = np.random.default_rng(zlib.crc32(spec.name.encode()))
        scale = 1.0 if vectors else 3.0  # logits far enough apart that scores differ
        self.table = (scale * rng.standard_normal((self.BUCKETS, width))).astype(np.float32)
        self.type_row = rng.standard_normal(width).astype(np.float32)

    def run(self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None,
            output: str | None = None, attention: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """As OnnxEngine.run; `attention` (a multi-vector query's expansion) changes nothing here."""
        output = output or self.spec.task_row.engine_output
        outputs = []
        for row, sequence in enumerate(sequences):
            ids = np.asarray(sequence, dtype=np.int64).reshape(-1)
            if len(ids) == 0:
                raise ValueError("empty token sequence")
            bad = ids[(ids < 0) | (ids >= self.rows)] if self.rows else ids[ids < 0]
            if len(bad):
                raise RuntimeError(
                    "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running Gather "
                    f"node. Name:'/embeddings/word_embeddings/Gather' Status Message: indices element out of data "
                    f"bounds, idx={int(bad[0])} must be within the inclusive range [-{self.rows},{self.rows - 1}]")
            if self.spec.task_row.sparse:
                vector = np.zeros(self.spec.dim, dtype=np.float32)
                vector[ids] = 0.5 + (ids % 7) / 10
                outputs.append(vector)
                continue
            features = self.table[ids % self.BUCKETS]
            if token_type_ids is not None:
                features = features + np.asarray(token_type_ids[row], dtype=np.float32).reshape(-1, 1) * self.type_row
            if output == T.TOKEN_WEIGHTS:  # a hybrid model's lexical weights: some zero, as relu makes them
                features = np.maximum(features[:, :1], 0.0)
            elif self.spec.hybrid and output == T.TOKEN_EMBEDDINGS:  # its ColBERT width
                features = features[:, : self.spec.hybrid["colbert_dim"]]
            outputs.append(features if self.spec.task_row.per_token_output(output) else features.mean(axis=0))
        return outputs

    def run_outputs(self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None,
                    outputs: tuple[str, ...], attention: list[np.ndarray] | None = None) -> dict[str, list[np.ndarray]]:
        """As OnnxEngine.run_outputs (here one `run` per output: a fake has no pass to share)."""
        return {output: self.run(sequences, token_type_ids, output, attention) for output in outputs}


def fake_engine_stage(rows: int | None) -> type:
    """The real `EngineStage` (unpadding, one result per request) over a `FakeEngine`."""

    class FakeEngineStage(EngineStage):
        def __init__(self, spec: ModelSpec, files: Path) -> None:
            self.spec = spec
            self.engine = FakeEngine(spec, rows)

    return FakeEngineStage


# --- models ----------------------------------------------------------------------------------------------


class TritonFailure(Exception):
    """What the gRPC call answers instead of outputs: a status and Triton's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Fault:
    """An error the fake answers instead of working.

    model None: every ModelInfer call fails at once with exactly `message` (the endpoint itself is sick:
    UNAVAILABLE). A model name: the call fails when it reaches that model, a composing step included, so
    through an ensemble the message gets Triton's "in ensemble '<name>', " prefix. `times`: how many calls
    it answers before it is spent (None: until `clear()`).
    """

    code: grpc.StatusCode
    message: str
    model: str | None = None
    times: int | None = None

    @classmethod
    def unavailable(cls, times: int | None = None) -> Fault:
        return cls(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: UNAVAILABLE: "
                   "ipv4:127.0.0.1: Connection refused", None, times)

    @classmethod
    def stub_unhealthy(cls, model: str, times: int | None = None) -> Fault:
        """A Python backend stub that died: untagged INTERNAL, as Triton says it."""
        return cls(grpc.StatusCode.INTERNAL, UNHEALTHY.format(instance=f"{model}_0_0"), model, times)


def datatype_name(data_type: int) -> str:
    """model_config DataType -> the protocol's datatype string (TYPE_STRING -> BYTES)."""
    name = model_config_pb2.DataType.Name(data_type).removeprefix("TYPE_")
    return "BYTES" if name == "STRING" else name


def protocol_datatype(array: np.ndarray) -> str:
    if array.dtype == np.object_ or array.dtype.kind in "SU":
        return "BYTES"
    return {np.dtype(np.bool_): "BOOL", np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32",
            np.dtype(np.float64): "FP64", np.dtype(np.int8): "INT8", np.dtype(np.int16): "INT16",
            np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.uint8): "UINT8",
            np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64"}[array.dtype]


def shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


class FakeModel:
    def __init__(self, folder: Path, engine_rows: dict[str, int]) -> None:
        self.folder = folder
        self.config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        self.name = self.config.name
        self.config_json = json.loads(MessageToJson(self.config, preserving_proto_field_name=True))
        self.inputs = {t.name: t for t in self.config.input}
        self.outputs = {t.name: t for t in self.config.output}
        self.ensemble = self.config.platform == "ensemble"
        self.instance = None
        if not self.ensemble:
            self.instance = self._python_model(engine_rows)

    def _python_model(self, engine_rows: dict[str, int]):
        """The copied model.py's TritonPythonModel, initialized as Triton does; the engine swapped."""
        pb_utils_module()
        source = self.folder / VERSION / "model.py"
        module_spec = importlib.util.spec_from_file_location(f"fake_triton_models.{self.name}", source)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        model_class = module.TritonPythonModel
        if issubclass(getattr(model_class, "stage_class", object), EngineStage):
            manifest = self.config.parameters[MANIFEST_PARAMETER].string_value
            rows = engine_rows.get(ModelSpec.from_json(manifest).name)
            model_class = type("FakeEngineModel", (model_class,), {"stage_class": fake_engine_stage(rows)})
        instance = model_class()
        parameters = {name: value for name, value in self.config_json["parameters"].items() if name != NICE_PARAMETER}
        config = {**self.config_json, "parameters": parameters}  # a bulk step's nice: never the test process's
        instance.initialize({"model_config": json.dumps(config), "model_repository": str(self.folder),
                             "model_version": VERSION, "model_name": self.name,
                             "model_instance_kind": "CPU", "model_instance_name": f"{self.name}_0_0"})
        return instance

    def check_inputs(self, tensors: dict[str, np.ndarray], request_id: str) -> None:
        """Triton's checks of a request against the config, with its words."""
        prefix = f"[request id: {request_id}] " if request_id else ""
        for name, array in tensors.items():
            if name not in self.inputs:
                raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{prefix}unexpected inference input '{name}' for model '{self.name}'")
            declared = self.inputs[name]
            expected, got = datatype_name(declared.data_type), protocol_datatype(array)
            if expected != got:
                raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{prefix}inference input '{name}' data-type is '{got}', but model "
                                    f"'{self.name}' expects '{expected}'")
            dims = [-1, *declared.dims] if self.config.max_batch_size > 0 else list(declared.dims)
            if len(dims) != array.ndim or any(d not in (-1, s) for d, s in zip(dims, array.shape, strict=True)):
                raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{prefix}unexpected shape for input '{name}' for model '{self.name}'. "
                                    f"Expected {shape_text(dims)}, got {shape_text(array.shape)}. ")
            if self.config.max_batch_size > 0 and array.shape[0] > self.config.max_batch_size:
                raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{prefix}inference request batch-size must be <= "
                                    f"{self.config.max_batch_size} for '{self.name}'")
        missing = [name for name, t in self.inputs.items() if not t.optional and name not in tensors]
        if missing:
            required = sum(1 for t in self.inputs.values() if not t.optional)
            raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                f"{prefix}expected {required} inputs but got {len(tensors)} inputs for model "
                                f"'{self.name}'. Got input(s) {sorted(tensors)}, but missing required input(s) "
                                f"{missing}. Please provide all required input(s).")

    def execute(self, tensors: dict[str, np.ndarray], requested: list[str] | None = None) -> dict[str, np.ndarray]:
        """One request through the real adapter, which answers outputs or a TritonError. `requested`: the
        outputs asked for (an ensemble asks a step for those its output_map takes; default all declared);
        as Triton, only those are answered, and one missing is an error."""
        requested = list(requested) if requested is not None else list(self.outputs)
        request = InferenceRequest([Tensor(name, array) for name, array in tensors.items()], requested=requested)
        try:
            (response,) = self.instance.execute([request])
        except Exception as exc:  # an exception out of execute(): the backend fails the request itself
            raise TritonFailure(grpc.StatusCode.INTERNAL,
                                f"Failed to process the request(s) for model '{self.name}_0_0', message: "
                                f"{type(exc).__name__}: {exc}") from None
        if response.has_error():
            error = response.error()
            raise TritonFailure(GRPC_STATUS.get(error.code(), grpc.StatusCode.INTERNAL), error.message())
        outputs = {t.name(): t.as_numpy() for t in response.output_tensors()}
        for name, array in outputs.items():  # a stage breaking its config's contract is a bug: say so loudly
            declared = datatype_name(self.outputs[name].data_type) if name in self.outputs else None
            if declared != protocol_datatype(array):
                raise TritonFailure(grpc.StatusCode.INTERNAL,
                                    f"fake triton: model '{self.name}' returned output '{name}' as "
                                    f"{protocol_datatype(array)}; its config declares {declared or 'no such output'}")
        missing = [name for name in requested if name not in outputs and name not in T.LAID_OUT]
        if missing:
            raise TritonFailure(grpc.StatusCode.INTERNAL,
                                f"fake triton: model '{self.name}' did not return requested output '{missing[0]}'")
        return {name: outputs[name] for name in requested if name in outputs}


# --- the server ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferCall:
    model: str
    priority: int  # the request's priority parameter (0: none sent)
    inputs: int  # its batch size


class FakeTriton:
    """The fake endpoint on a free loopback port, served by its own event loop in a background thread.

    `repositories`: folders of models written by `builder.repository.write_repository`.
    `engine_rows`: per served model (ensemble name), the fake engine's vocabulary when it should be
    smaller than the manifest's (ids past it fail inside the engine: a 424, not the gateway's 422).
    """

    def __init__(self, repositories: list[Path], engine_rows: dict[str, int] | None = None, port: int = 0) -> None:
        self.models: dict[str, FakeModel] = {}
        for repository in repositories:
            for config in sorted(Path(repository).glob("*/config.pbtxt")):
                model = FakeModel(config.parent, engine_rows or {})
                self.models[model.name] = model
        self.port = port
        self.ready = True
        self.infer_calls: list[str] = []  # the model of every ModelInfer call, in order (steps not included)
        self.infer_requests: list[InferCall] = []  # and what each asked
        self._faults: list[list] = []  # [fault, calls left or None]
        self._lock = threading.Lock()
        self._hang_all = False
        self._hung_models: set[str] = set()
        self._waiting = 0
        self._release: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: grpc.aio.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- lifecycle

    def start(self) -> FakeTriton:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # surfaced by start()
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-triton", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self._release = asyncio.Event()
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", -1),
                                          ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Service(self), server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    def stop(self) -> None:
        """Close the port (clients get UNAVAILABLE: connection refused); `start()` opens it again."""
        if self._loop is None:
            return
        self.release()
        loop = self._loop

        async def shutdown() -> None:
            await self._server.stop(grace=None)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(30)
        self._loop = self._server = self._thread = None

    def __enter__(self) -> FakeTriton:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear(self) -> None:
        """No faults, nothing hung, ready again."""
        with self._lock:
            self._faults.clear()
        self.release()
        self.ready = True

    def hang(self, model: str | None = None) -> None:
        """Every RPC (model None: a frozen tritonserver) or every inference reaching `model` waits for
        `release()`, or until the client gives up (its deadline)."""
        with self._lock:
            if model is None:
                self._hang_all = True
            else:
                self._hung_models.add(model)

    def release(self) -> None:
        with self._lock:
            self._hang_all = False
            self._hung_models.clear()
        if self._loop is not None and self._release is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._release.set()
        self._release = asyncio.Event()

    @contextlib.contextmanager
    def hung(self, model: str | None = None) -> Iterator[None]:
        self.hang(model)
        try:
            yield
        finally:
            self.release()

    def waiting(self) -> int:
        """RPCs held by a hang right now."""
        return self._waiting

    async def _gate(self, model: str | None = None) -> None:
        while True:
            with self._lock:
                held = self._hang_all or (model is not None and model in self._hung_models)
            if not held:
                return
            release = self._release
            self._waiting += 1
            try:
                await release.wait()
            finally:
                self._waiting -= 1

    def _fault_for(self, model: str | None) -> Fault | None:
        with self._lock:
            for entry in self._faults:
                fault, left = entry
                if fault.model == model and (left is None or left > 0):
                    if left is not None:
                        entry[1] = left - 1
                    return fault
        return None

    # -- inference

    def model(self, name: str) -> FakeModel:
        if name not in self.models:
            raise TritonFailure(grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{name}' is not found")
        return self.models[name]

    async def infer(self, name: str, tensors: dict[str, np.ndarray], request_id: str = "") -> dict[str, np.ndarray]:
        fault = self._fault_for(None)
        if fault:
            raise TritonFailure(fault.code, fault.message)
        model = self.model(name)
        model.check_inputs(tensors, request_id)
        if not model.ensemble:
            return await self._run(model, tensors)
        try:
            return await self._run_ensemble(model, tensors)
        except TritonFailure as failure:
            raise TritonFailure(failure.code, f"in ensemble '{name}', {failure.message}") from None

    async def _run(self, model: FakeModel, tensors: dict[str, np.ndarray], requested: list[str] | None = None
                   ) -> dict[str, np.ndarray]:
        await self._gate(model.name)
        fault = self._fault_for(model.name)
        if fault:
            raise TritonFailure(fault.code, fault.message)
        return model.execute(tensors, requested)

    async def _run_ensemble(self, ensemble: FakeModel, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        await self._gate(ensemble.name)
        fault = self._fault_for(ensemble.name)
        if fault:
            raise TritonFailure(fault.code, fault.message)
        available = dict(tensors)
        for step in ensemble.config.ensemble_scheduling.step:
            composing = self.model(step.model_name)
            feeds = {inner: available[outer] for inner, outer in step.input_map.items() if outer in available}
            composing.check_inputs(feeds, "")
            produced = await self._run(composing, feeds, list(step.output_map))
            for inner, outer in step.output_map.items():
                if inner in produced:
                    available[outer] = produced[inner]
        return {name: available[name] for name in ensemble.outputs if name in available}


def _decode_inputs(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    tensors = {}
    for index, tensor in enumerate(request.inputs):
        shape = [int(d) for d in tensor.shape]
        raw = request.raw_input_contents[index] if index < len(request.raw_input_contents) else b""
        if tensor.datatype == "BYTES":
            array = deserialize_bytes_tensor(raw) if raw else np.array(list(tensor.contents.bytes_contents),
                                                                       dtype=np.object_)
        else:
            array = np.frombuffer(raw, dtype=triton_to_np_dtype(tensor.datatype))
        try:
            tensors[tensor.name] = array.reshape(shape)
        except ValueError:
            raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unexpected total byte size {len(raw)} for input '{tensor.name}', expecting "
                                f"shape {shape_text(shape)}") from None
    return tensors


def _encode_outputs(response: service_pb2.ModelInferResponse, outputs: dict[str, np.ndarray]) -> None:
    for name, array in outputs.items():
        array = np.asarray(array)
        tensor = response.outputs.add(name=name, datatype=protocol_datatype(array), shape=list(array.shape))
        if tensor.datatype == "BYTES":
            serialized = serialize_byte_tensor(array)
            response.raw_output_contents.append(serialized.item() if serialized.size > 0 else b"")
        else:
            response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
        del tensor


class _Service(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, fake: FakeTriton) -> None:
        self.fake = fake

    async def ServerLive(self, request, context):
        await self.fake._gate()
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        await self.fake._gate()
        return service_pb2.ServerReadyResponse(ready=self.fake.ready)

    async def ModelReady(self, request, context):
        await self.fake._gate()
        return service_pb2.ModelReadyResponse(ready=self.fake.ready and request.name in self.fake.models)

    async def ServerMetadata(self, request, context):
        await self.fake._gate()
        return service_pb2.ServerMetadataResponse(name="triton", version="2.51.0", extensions=["fake"])

    async def RepositoryIndex(self, request, context):
        await self.fake._gate()
        models = [service_pb2.RepositoryIndexResponse.ModelIndex(name=name, version=VERSION, state="READY")
                  for name in sorted(self.fake.models)]
        return service_pb2.RepositoryIndexResponse(models=models)

    async def ModelConfig(self, request, context):
        await self.fake._gate()
        try:
            model = self.fake.model(request.name)
        except TritonFailure as failure:
            await context.abort(failure.code, failure.message)
        return service_pb2.ModelConfigResponse(config=model.config)

    async def ModelInfer(self, request, context):
        await self.fake._gate()
        self.fake.infer_calls.append(request.model_name)
        priority = request.parameters["priority"].uint64_param if "priority" in request.parameters else 0
        batch = int(request.inputs[0].shape[0]) if request.inputs and request.inputs[0].shape else 0
        self.fake.infer_requests.append(InferCall(request.model_name, priority, batch))
        try:
            tensors = _decode_inputs(request)
            outputs = await self.fake.infer(request.model_name, tensors, request.id)
            wanted = [o.name for o in request.outputs] or list(outputs)
            missing = [name for name in wanted if name not in outputs]
            if missing:
                raise TritonFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"unexpected inference output '{missing[0]}' for model '{request.model_name}'")
        except TritonFailure as failure:
            await context.abort(failure.code, failure.message)
        response = service_pb2.ModelInferResponse(model_name=request.model_name, model_version=VERSION,
                                                  id=request.id)
        _encode_outputs(response, {name: outputs[name] for name in wanted})
        return response
