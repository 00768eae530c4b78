"""The fake Triton itself, through tritonclient as the gateway calls it: what it serves, what it answers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from testkit.fake_triton import FakeTriton, Fault
from trident.errors import decode


def text_input(texts: list[str], name: str = "TEXT") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(texts), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1))
    return tensor


def bool_input(name: str, value: bool, n: int) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [n, 1], "BOOL")
    tensor.set_data_from_numpy(np.full((n, 1), value))
    return tensor


@pytest.fixture
def client(fake: FakeTriton):
    with grpcclient.InferenceServerClient(fake.url) as client:
        yield client


def test_serves_the_repository_with_manifests(client):
    index = client.get_model_repository_index(as_json=True)["models"]
    names = {entry["name"] for entry in index}
    assert {"tiny-bert-mean", "tiny-bert-mean_tokenizer", "tiny-bert-mean_engine", "tiny-ner_postprocess"} <= names
    config = client.get_model_config("tiny-bert-mean", as_json=True)["config"]
    assert config["platform"] == "ensemble" and '"task":"embedding"' in config["parameters"]["trident_manifest"][
        "string_value"]
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny-bert-mean")


def test_ensemble_runs_the_real_stages(client):
    result = client.infer("tiny-bert-mean", [text_input(["the quick brown fox", "x"])])
    embeddings = result.as_numpy("EMBEDDINGS")
    assert embeddings.shape == (2, 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)  # the model normalizes
    assert result.as_numpy("NUM_TOKENS").reshape(-1).tolist() == [6, 3]  # [CLS] ... [SEP]: the real tokenizer
    again = client.infer("tiny-bert-mean", [text_input(["x"])]).as_numpy("EMBEDDINGS")
    np.testing.assert_array_equal(again[0], embeddings[1])  # deterministic, alone or in a batch


def test_ner_and_scores(client):
    ner = client.infer("tiny-ner", [text_input(["Ada lives in Paris"])]).as_numpy("RESULT")
    assert ner.shape == (1, 1) and ner[0, 0].startswith(b"[")
    scores = client.infer("tiny-classifier", [text_input(["good"]), bool_input("RAW_SCORES", False, 1)])
    np.testing.assert_allclose(scores.as_numpy("SCORES").sum(), 1.0, atol=1e-5)


def test_a_stage_refusal_arrives_as_triton_sends_it(client):
    too_long = [text_input(["word " * 200]), bool_input("TRUNCATE", False, 1)]
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bert-mean", too_long)
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert error.value.message().startswith("in ensemble 'tiny-bert-mean', trident-error ")
    refusal = decode(error.value.message())
    assert refusal.kind.value == "input_too_long" and refusal.details == {"index": 0, "num_tokens": 202,
                                                                          "max_length": 128}
    with pytest.raises(InferenceServerException) as direct:
        client.infer("tiny-bert-mean_tokenizer", too_long)
    assert direct.value.message().startswith("trident-error ")  # no ensemble, no prefix


def test_an_engine_failure_is_internal_and_tagged(client):
    ids = grpcclient.InferInput("INPUT_IDS", [1, 3], "INT64")
    ids.set_data_from_numpy(np.array([[2, 5000, 3]], dtype=np.int64))  # past tiny-bert-cls's real table
    types = grpcclient.InferInput("TOKEN_TYPE_IDS", [1, 3], "INT64")
    types.set_data_from_numpy(np.zeros((1, 3), dtype=np.int64))
    lengths = grpcclient.InferInput("NUM_TOKENS", [1, 1], "INT32")
    lengths.set_data_from_numpy(np.array([[3]], dtype=np.int32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bert-cls_engine", [ids, types, lengths])
    assert error.value.status() == "StatusCode.INTERNAL"
    failure = decode(error.value.message())
    assert failure.kind.value == "stage_failed" and "Gather" in failure.message


def test_what_triton_itself_refuses(client):
    with pytest.raises(InferenceServerException) as error:
        client.infer("nope", [text_input(["x"])])
    assert error.value.status() == "StatusCode.NOT_FOUND"
    assert error.value.message() == "Request for unknown model: 'nope' is not found"
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bert-mean", [text_input(["x"], name="TXT")])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unexpected inference input 'TXT'" in error.value.message()
    wrong_type = grpcclient.InferInput("TRUNCATE", [1, 1], "INT32")
    wrong_type.set_data_from_numpy(np.ones((1, 1), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="data-type is 'INT32', but model 'tiny-bert-mean' expects"):
        client.infer("tiny-bert-mean", [text_input(["x"]), wrong_type])


def test_faults(fake, client):
    fake.inject(Fault.unavailable(times=1))
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bert-mean", [text_input(["x"])])
    assert error.value.status() == "StatusCode.UNAVAILABLE"
    client.infer("tiny-bert-mean", [text_input(["x"])])  # spent after one call
    fake.inject(Fault.stub_unhealthy("tiny-bert-mean_engine"))
    with pytest.raises(InferenceServerException) as error:
        client.infer("tiny-bert-mean", [text_input(["x"])])
    assert error.value.status() == "StatusCode.INTERNAL"
    assert error.value.message() == ("in ensemble 'tiny-bert-mean', Failed to process the request(s) for model "
                                     "'tiny-bert-mean_engine_0_0', message: Stub process "
                                     "'tiny-bert-mean_engine_0_0' is not healthy.")
    fake.clear()
    fake.ready = False
    assert not client.is_server_ready() and client.is_server_live()
    fake.ready = True
    with fake.hung(), pytest.raises(InferenceServerException) as error:
        client.is_server_ready(client_timeout=0.3)
    assert error.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert client.is_server_ready()


def test_stop_and_start_again_on_the_same_port(fake, client):
    url = fake.url
    fake.stop()
    with pytest.raises(InferenceServerException) as error:
        client.is_server_ready(client_timeout=2)
    assert error.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")
    fake.start()
    assert fake.url == url
    deadline = time.monotonic() + 5  # gRPC's reconnect backoff after the refused connection
    while True:
        try:
            assert client.is_server_ready(client_timeout=1)
            break
        except InferenceServerException:
            assert time.monotonic() < deadline, "the restarted fake never answered"
            time.sleep(0.1)
