"""Builder: checkpoint inspection, hub errors, refusal on parity failure, repository contents."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from builder.build import BuildOptions, build
from builder.errors import BuildError
from builder.inspect import inspect_checkpoint
from builder.repository import pbtxt_string
from testkit.factories import make_tiny_bert
from trident.spec import ModelSpec


def test_minilm_spec(minilm_dir):
    spec = inspect_checkpoint(minilm_dir, "all-MiniLM-L6-v2")
    assert (spec.task, spec.pooling, spec.normalize, spec.max_length, spec.dim) == ("embedding", "mean", True, 256, 384)
    assert spec.uses_token_type_ids and spec.vocab_size == 30522


@pytest.mark.parametrize(("head", "labels", "task"), [("seq-cls", 1, "reranker"), ("seq-cls", 3, "classifier"),
                                                      ("token-cls", None, "ner")])
def test_task_detection(tmp_path, head, labels, task):
    spec = inspect_checkpoint(make_tiny_bert(tmp_path / "m", head=head, num_labels=labels), "m")
    assert spec.task == task
    assert spec.pooling is None and spec.num_labels == (labels or 9)


def test_pooling_and_length_from_sentence_transformers_files(tmp_path):
    spec = inspect_checkpoint(make_tiny_bert(tmp_path / "m", pooling="mean", max_seq_length=77), "m")
    assert (spec.pooling, spec.max_length, spec.normalize) == ("mean", 77, False)


def test_remote_code_is_refused(tmp_path):
    model = make_tiny_bert(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(BuildError, match="trust-remote-code"):
        inspect_checkpoint(model, "m")


def test_hub_id_offline_is_a_message_not_a_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "cli", "build", "no-such-org/no-such-model",
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    assert "could not fetch 'no-such-org/no-such-model'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "no-such-model").exists()


def test_not_a_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli", "build", str(tmp_path), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no config.json" in result.stderr


def test_build_refuses_to_write_when_engine_differs(tmp_path, monkeypatch):
    """Export a different (re-seeded) model than the checkpoint: parity must fail, nothing written."""
    import builder.export as export

    model = make_tiny_bert(tmp_path / "model", seed=0)
    impostor = make_tiny_bert(tmp_path / "impostor", seed=1)
    real_export = export.export_onnx
    monkeypatch.setattr(export, "export_onnx", lambda _dir, spec, out, **_: real_export(impostor, spec, out))
    out = tmp_path / "repository"
    with pytest.raises(BuildError, match="does not match transformers"):
        build(BuildOptions(model=str(model), out=out, name="tiny"), progress=lambda _: None)
    assert not (out / "tiny").exists() and not (out / "tiny_engine").exists()


def test_build_writes_a_complete_repository(tmp_path):
    out = tmp_path / "repository"
    result = build(BuildOptions(model=str(make_tiny_bert(tmp_path / "m")), out=out, name="tiny"),
                   progress=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == ["tiny", "tiny_engine", "tiny_postprocess", "tiny_tokenizer"]
    manifest = ModelSpec.load(out / "tiny" / "manifest.json")
    assert manifest == result.spec and manifest.content_hash and manifest.builder_version
    assert manifest.parity["max_abs_diff"] <= 1e-4
    for model in ("tiny_tokenizer", "tiny_engine", "tiny_postprocess"):
        config = (out / model / "config.pbtxt").read_text()
        assert "dynamic_batching" in config and 'backend: "python"' in config and "max_batch_size" in config
    assert 'platform: "ensemble"' in (out / "tiny" / "config.pbtxt").read_text()
    assert (out / "tiny" / "1").is_dir()


def test_pbtxt_string_round_trips_through_protobuf():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = 'labels {"a": "Zürich \\\\ \\"quoted\\"", "emoji": "🍕"}\n\ttab'
    config = text_format.Parse(f'name: "x" parameters {{ key: "k" value {{ string_value: {pbtxt_string(text)} }} }}',
                               model_config_pb2.ModelConfig())
    assert config.parameters["k"].string_value == text


def test_shape_embeddings_truncates_then_normalizes():
    from trident.postprocess import shape_embeddings

    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    np.testing.assert_allclose(shape_embeddings(vectors, True, 2), [[0.6, 0.8]], atol=1e-7)
    np.testing.assert_allclose(shape_embeddings(vectors, False, 0), vectors)


def test_engine_instances_default_to_two_on_cpu_with_cores_shared(tmp_path):
    from trident.onnx_engine import threads_per_instance

    model = make_tiny_bert(tmp_path / "m")
    build(BuildOptions(model=str(model), out=tmp_path / "out", name="m"), progress=lambda _: None)
    config = (tmp_path / "out" / "m_engine" / "config.pbtxt").read_text()
    assert "instance_group [ { kind: KIND_CPU count: 2 } ]" in config
    cores = len(os.sched_getaffinity(0))
    assert threads_per_instance(2) == max(1, cores // 2) and threads_per_instance(1) == cores
    build(BuildOptions(model=str(model), out=tmp_path / "out3", name="m", engine_instances=3), progress=lambda _: None)
    assert "count: 3" in (tmp_path / "out3" / "m_engine" / "config.pbtxt").read_text()
    with pytest.raises(BuildError, match="at least 1"):
        build(BuildOptions(model=str(model), out=tmp_path / "out0", name="m", engine_instances=0),
              progress=lambda _: None)
