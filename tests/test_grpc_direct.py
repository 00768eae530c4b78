"""Triton's own gRPC endpoint stays usable: the ensemble takes raw text and returns vectors."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient


def test_ensemble_over_grpc(stack):
    client = grpcclient.InferenceServerClient(stack.grpc_url)
    texts = np.array([b"A man is playing a guitar.", b"Someone is playing an instrument."], dtype=np.object_)
    text = grpcclient.InferInput("TEXT", [2, 1], "BYTES")
    text.set_data_from_numpy(texts.reshape(-1, 1))
    result = client.infer("all-MiniLM-L6-v2", [text])
    embeddings = result.as_numpy("EMBEDDINGS")
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert abs(float(embeddings[0] @ embeddings[1]) - 0.675) < 0.01
    assert result.as_numpy("NUM_TOKENS").reshape(-1).tolist() == [9, 8]


def test_ensemble_optional_inputs(stack):
    client = grpcclient.InferenceServerClient(stack.grpc_url)
    text = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"matryoshka"]], dtype=np.object_))
    dims = grpcclient.InferInput("DIMENSIONS", [1, 1], "INT32")
    dims.set_data_from_numpy(np.array([[32]], dtype=np.int32))
    embeddings = client.infer("all-MiniLM-L6-v2", [text, dims]).as_numpy("EMBEDDINGS")
    assert embeddings.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings), 1.0, atol=1e-5)
