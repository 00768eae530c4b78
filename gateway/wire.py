"""Triton's gRPC inference messages straight from numpy and back (KServe v2 `ModelInferRequest`).

tritonclient's `InferInput` / `InferResult` wrappers cost more of a short request's CPU than the call
itself: one Python object per tensor, a copy through `serialize_byte_tensor`, a dict per output. Here a
request is one protobuf with every tensor as raw little-endian bytes in `raw_input_contents`, and each
output is read with `np.frombuffer` (no copy). The messages are tritonclient's own generated protobufs.
"""

from __future__ import annotations

import numpy as np
from tritonclient.grpc import service_pb2
from tritonclient.utils import deserialize_bytes_tensor

DATATYPES = {np.dtype(np.object_): "BYTES", np.dtype(np.bool_): "BOOL", np.dtype(np.int32): "INT32",
             np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32"}
NUMPY_TYPES = {"BOOL": np.bool_, "INT32": np.int32, "INT64": np.int64, "FP32": np.float32, "FP16": np.float16,
               "INT8": np.int8, "UINT8": np.uint8, "FP64": np.float64}


def byte_elements(array: np.ndarray) -> bytes:
    """A BYTES tensor's wire form: each element as a 4-byte little-endian length, then its bytes."""
    parts = []
    for item in array.reshape(-1):
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts += (len(data).to_bytes(4, "little"), data)
    return b"".join(parts)


def infer_request(model: str, tensors: dict[str, np.ndarray], outputs: tuple[str, ...],
                  request_id: str = "", priority: int = 0) -> service_pb2.ModelInferRequest:
    """`priority`: Triton's level for the request (0: the model's default), which an ensemble hands to its steps."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    if priority:
        request.parameters["priority"].uint64_param = priority
    for name, array in tensors.items():
        datatype = DATATYPES[array.dtype]
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(byte_elements(array) if datatype == "BYTES"
                                          else np.ascontiguousarray(array).tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def response_arrays(response: service_pb2.ModelInferResponse) -> dict[str, np.ndarray]:
    """Every output of the answer by name, shaped; numeric ones are read-only views of the message."""
    arrays = {}
    for output, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if output.datatype == "BYTES":
            flat = deserialize_bytes_tensor(raw)
        else:
            flat = np.frombuffer(raw, dtype=NUMPY_TYPES[output.datatype])
        arrays[output.name] = flat.reshape(tuple(output.shape))
    return arrays
