"""Builder: checkpoint inspection, hub errors, refusal on parity failure, repository contents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builder.build import BuildOptions, build
from builder.errors import BuildError
from builder.inspect import inspect_checkpoint
from testkit.factories import make_tiny_bert
from trident.spec import MANIFEST_PARAMETER, ModelSpec


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
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "tiny", "tiny_engine", "tiny_ids", "tiny_ids_input", "tiny_postprocess", "tiny_tokenizer", "tiny_tokens",
        "tiny_bulk", "tiny_engine_bulk", "tiny_ids_bulk", "tiny_tokenizer_bulk", "tiny_tokens_bulk"])
    manifest = ModelSpec.load(out / "tiny" / "manifest.json")
    assert manifest == result.spec and manifest.content_hash and manifest.builder_version
    assert manifest.parity["max_abs_diff"] <= 1e-4
    for model in ("tiny_tokenizer", "tiny_ids_input", "tiny_engine", "tiny_postprocess"):
        config = read_config(out / model)
        assert config.backend == "python" and config.max_batch_size and config.HasField("dynamic_batching")
        assert ModelSpec.from_json(config.parameters[MANIFEST_PARAMETER].string_value) == manifest
    for ensemble in ("tiny", "tiny_ids", "tiny_tokens"):
        assert read_config(out / ensemble).platform == "ensemble" and (out / ensemble / "1").is_dir()
    for ensemble in ("tiny_ids", "tiny_tokens"):  # discovered once, as `tiny`
        assert MANIFEST_PARAMETER not in read_config(out / ensemble).parameters


def read_config(folder: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_manifest_round_trips_through_the_config(tmp_path):
    from builder.repository import configs_for, render

    spec = ModelSpec(name="m", task="classifier", architecture="X", model_type="bert", max_length=8, dim=2,
                     id2label={"0": 'Zürich \\ "quoted"', "1": "🍕\n\ttab"})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text(render(configs_for(spec)["m"]))
    assert ModelSpec.from_json(read_config(tmp_path / "m").parameters[MANIFEST_PARAMETER].string_value) == spec


def test_shape_embeddings_truncates_then_normalizes():
    from trident.postprocess import shape_embeddings

    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    np.testing.assert_allclose(shape_embeddings(vectors, True, 2), [[0.6, 0.8]], atol=1e-7)
    np.testing.assert_allclose(shape_embeddings(vectors, False, 0), vectors)


def test_engine_instances_default_to_two_on_cpu_with_cores_shared(tmp_path):
    from trident.engines.onnxruntime import threads_per_instance

    model = make_tiny_bert(tmp_path / "m")
    build(BuildOptions(model=str(model), out=tmp_path / "out", name="m"), progress=lambda _: None)
    assert [group.count for group in read_config(tmp_path / "out" / "m_engine").instance_group] == [2]
    cores = len(os.sched_getaffinity(0))
    assert threads_per_instance(2) == max(1, cores // 2) and threads_per_instance(1) == cores
    build(BuildOptions(model=str(model), out=tmp_path / "out3", name="m", engine_instances=3), progress=lambda _: None)
    assert [group.count for group in read_config(tmp_path / "out3" / "m_engine").instance_group] == [3]
    with pytest.raises(BuildError, match="at least 1"):
        build(BuildOptions(model=str(model), out=tmp_path / "out0", name="m", engine_instances=0),
              progress=lambda _: None)
