"""`trident build --config FILE`: BEI's YAML is read, every bad key or value is refused by name before
any work, and REMOTE_URL archives are fetched over HTTP and unpacked safely. (A full YAML build, served
and compared with the references, is in test_tasks_e2e.py.)"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from builder.config_file import (
    BuildConfig,
    check_settings,
    download_checkpoint,
    fetched_checkpoint,
    load_build_config,
    parse_build_config,
)
from builder.errors import BuildError
from cli.main import main
from testkit.factories import make_tiny_bert
from tests.http_files import ArchiveServer
from trident.spec import ModelSpec

SEED_RERANKER = """
trt_llm:
  build:
    base_model: encoder
    checkpoint_repository:
      source: HF
      repo: "BAAI/bge-reranker-v2-m3"
    max_num_tokens: 16384
  runtime:
    webserver_default_route: /rerank
"""
SEED_NER = """
trt_llm:
  build:
    base_model: encoder_bert
    checkpoint_repository:
      source: HF
      repo: "baseten-admin/bert-base-ner-uncased"
      revision: main
    max_num_tokens: 16384
  runtime:
    webserver_default_route: /predict_tokens
"""
SEED_CLASSIFIER = """
trt_llm:
  build:
    base_model: encoder
    checkpoint_repository:
      source: HF
      repo: "papluca/xlm-roberta-base-language-detection"
    quantization_type: no_quant
  runtime:
    webserver_default_route: /predict
"""


def parse(text: str, base_dir: Path | None = None) -> BuildConfig:
    import yaml

    return parse_build_config(yaml.safe_load(text), base_dir)


def test_seed_configs_parse():
    reranker = parse(SEED_RERANKER)
    assert (reranker.source, reranker.model, reranker.base_model, reranker.max_num_tokens, reranker.default_route) \
        == ("HF", "BAAI/bge-reranker-v2-m3", "encoder", 16384, "/rerank")
    ner = parse(SEED_NER)
    assert (ner.base_model, ner.revision, ner.default_route) == ("encoder_bert", "main", "/predict_tokens")
    classifier = parse(SEED_CLASSIFIER)
    assert (classifier.quantization, classifier.default_route) == ("no_quant", "/predict")
    options = classifier.build_options("/some/folder", Path("/out"), name="lang")
    assert (options.model, options.name, options.quantization, options.default_route, options.base_model) == \
        ("/some/folder", "lang", "no_quant", "/predict", "encoder")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("trt_llm: {build: {checkpoint_repository: {repo: x}}}\nresources: {}", "resources: unknown key"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}}, serve: {}}", "trt_llm.serve: unknown key"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}, max_tokens: 4}}",
         "trt_llm.build.max_tokens: unknown key"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x, branch: main}}}",
         "trt_llm.build.checkpoint_repository.branch: unknown key"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}}, runtime: {port: 8}}",
         "trt_llm.runtime.port: unknown key"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}, base_model: decoder}}",
         "trt_llm.build.base_model: 'decoder' is not one of encoder, encoder_bert"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}, quantization_type: fp9}}",
         "trt_llm.build.quantization_type: 'fp9'"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}, max_num_tokens: lots}}",
         "trt_llm.build.max_num_tokens: must be a positive integer"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}, max_num_tokens: 0}}",
         "trt_llm.build.max_num_tokens: must be a positive integer"),
        ("trt_llm: {build: {checkpoint_repository: {repo: x}}, runtime: {webserver_default_route: /nope}}",
         "trt_llm.runtime.webserver_default_route: '/nope'"),
        ("trt_llm: {build: {checkpoint_repository: {source: FTP, repo: x}}}",
         "trt_llm.build.checkpoint_repository.source: 'FTP'"),
        ("trt_llm: {build: {checkpoint_repository: {source: HF}}}",
         "trt_llm.build.checkpoint_repository.repo: missing"),
        ("trt_llm: {build: {}}", "trt_llm.build.checkpoint_repository: missing"),
        ("trt_llm: {runtime: {}}", "trt_llm.build: missing"),
        ("trt_llm: [1, 2]", "trt_llm: must be a mapping"),
        ("just text", "the config: must be a mapping"),
        ("trt_llm: {build: {checkpoint_repository: {source: REMOTE_URL, repo: 'file:///etc/passwd'}}}",
         "needs an http:// or https:// URL"),
        ("trt_llm: {build: {checkpoint_repository: {source: LOCAL, repo: /no/such/folder}}}", "is not a folder"),
        ("trt_llm: {build: {base_model: encoder_bert, quantization_type: fp8, checkpoint_repository: {repo: x}}}",
         "BEI-Bert (BERT-family, bidirectional models) has no quantization support, FP16/BF16 only"),
    ],
)
def test_bad_keys_and_values_are_named(text, fragment):
    with pytest.raises(BuildError) as error:
        parse(text)
    assert fragment in str(error.value)


@pytest.mark.parametrize("source", ["GCS", "S3", "AZURE"])
def test_cloud_sources_are_not_supported_yet(source):
    with pytest.raises(BuildError, match=f"{source} is not supported yet"):
        parse(f"trt_llm: {{build: {{checkpoint_repository: {{source: {source}, repo: bucket/model}}}}}}")


def test_local_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "models" / "m").mkdir(parents=True)
    config = tmp_path / "bei.yaml"
    config.write_text("trt_llm: {build: {checkpoint_repository: {source: LOCAL, repo: models/m}}}")
    assert load_build_config(config).model == str(tmp_path / "models" / "m")
    config.write_text("trt_llm: {build: {checkpoint_repository: {source: HF, repo: models/m}}}")
    assert load_build_config(config).model == str(tmp_path / "models" / "m")  # a folder that exists wins
    config.write_text("trt_llm: {build: {checkpoint_repository: {source: HF, repo: owner/name}}}")
    assert load_build_config(config).model == "owner/name"
    config.write_text("trt_llm: {build: [unclosed")
    with pytest.raises(BuildError, match="not valid YAML"):
        load_build_config(config)


def spec(task: str, model_type: str = "bert", labels: int = 2) -> ModelSpec:
    return ModelSpec(name="m", task=task, architecture=f"{model_type}X", model_type=model_type, max_length=16,
                     dim=labels, id2label={str(i): f"L{i}" for i in range(labels)})


@pytest.mark.parametrize(
    ("model", "base_model", "quantization", "route", "fragment"),
    [
        (spec("ner", labels=9), "encoder", "no_quant", None, "NER requires BEI-Bert (base_model: encoder_bert)"),
        (spec("classifier"), "encoder", "fp8", None, "no quantization support, FP16/BF16 only"),
        (spec("embedding", "qwen3"), "encoder_bert", "no_quant", None, "qwen3 is a causal model"),
        (spec("embedding", "qwen3"), "encoder", "fp8", None, "quantization_type: fp8"),  # see builder.quantization
        (spec("reranker", labels=3), None, "no_quant", None, "a reranker has one output label"),
        (spec("reranker", labels=1), "encoder", "no_quant", "/predict_tokens", "cannot serve a reranker model"),
        (spec("embedding"), None, "no_quant", "/rerank", "cannot serve an embedding model"),
    ],
)
def test_settings_the_checkpoint_rules_out(model, base_model, quantization, route, fragment):
    with pytest.raises(BuildError) as error:
        check_settings(model, base_model, quantization, route)
    assert fragment in str(error.value)


def test_settings_that_apply_pass():
    check_settings(spec("ner", labels=9), "encoder_bert", "no_quant", "/predict_tokens")
    check_settings(spec("reranker", labels=1), "encoder", "no_quant", "/predict")  # BEI's Qwen3-Reranker advice
    check_settings(spec("embedding", "qwen3"), "encoder", "no_quant", None)


def test_ner_on_encoder_fails_before_any_export(tmp_path, capsys):
    checkpoint = make_tiny_bert(tmp_path / "ner", head="token-cls")
    config = tmp_path / "bei.yaml"
    config.write_text(f"trt_llm: {{build: {{base_model: encoder, checkpoint_repository: "
                      f"{{source: LOCAL, repo: {checkpoint}}}}}}}")
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "NER requires BEI-Bert" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_hub_source_fails_clearly_without_the_hub(tmp_path, capsys):
    config = tmp_path / "bei.yaml"
    config.write_text("trt_llm: {build: {checkpoint_repository: {source: HF, repo: trident-tests/no-such-model}}}")
    assert main(["build", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "could not fetch 'trident-tests/no-such-model' from the Hugging Face hub" in capsys.readouterr().err


# --- REMOTE_URL ---


def _tar_gz(members: dict[str, bytes], folder: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
    return buffer.getvalue()


FILES = {"config.json": b'{"model_type": "bert"}', "tokenizer.json": b"{}", "sub/extra.txt": b"x"}


def test_remote_url_archives_unpack(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "flat.tar.gz").write_bytes(_tar_gz(FILES))
    (served / "nested.tar.gz").write_bytes(_tar_gz(FILES, folder="my-model/"))
    (served / "model.zip").write_bytes(_zip(FILES))
    with ArchiveServer(served) as server:
        for index, name in enumerate(["flat.tar.gz", "nested.tar.gz", "model.zip"]):
            work = tmp_path / f"work{index}"
            work.mkdir()
            folder = download_checkpoint(server.url(name), work)
            assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == FILES
        config = parse(f"trt_llm: {{build: {{checkpoint_repository: {{source: REMOTE_URL, "
                       f"repo: '{server.url('nested.tar.gz')}'}}}}}}")
        with fetched_checkpoint(config) as model:
            assert (Path(model) / "config.json").is_file()
        assert not Path(model).exists(), "the download lives only as long as the build"
        with pytest.raises(BuildError, match="could not download"):
            download_checkpoint(server.url("missing.tar.gz"), tmp_path)


@pytest.mark.parametrize(
    ("name", "archive", "fragment"),
    [
        ("escape.tar.gz", _tar_gz({"../evil.txt": b"x", "config.json": b"{}"}), "refusing to unpack"),
        ("absolute.tar.gz", _tar_gz({"/tmp/evil.txt": b"x"}), "refusing to unpack"),
        ("escape.zip", _zip({"../../evil.txt": b"x"}), "refusing to unpack"),
        ("plain.txt", b"not an archive", "neither a tar nor a zip"),
        ("empty.tar.gz", _tar_gz({"README": b"no model here"}), "has no config.json"),
    ],
)
def test_unsafe_or_wrong_archives_are_refused(tmp_path, name, archive, fragment):
    served = tmp_path / "served"
    served.mkdir()
    (served / name).write_bytes(archive)
    with ArchiveServer(served) as server, pytest.raises(BuildError, match=fragment):
        download_checkpoint(server.url(name), tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_symlinks_in_archives_are_refused(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo("config.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    served = tmp_path / "served"
    served.mkdir()
    (served / "link.tar.gz").write_bytes(buffer.getvalue())
    with ArchiveServer(served) as server, pytest.raises(BuildError, match="not a plain file"):
        download_checkpoint(server.url("link.tar.gz"), tmp_path)
