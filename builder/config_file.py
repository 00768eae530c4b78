"""BEI's YAML build config (`trident build --config FILE`): parsed, checked, turned into BuildOptions.

    trt_llm:
      build:
        base_model: encoder | encoder_bert
        checkpoint_repository: {source: HF | LOCAL | REMOTE_URL | GCS | S3 | AZURE, repo, revision}
        max_num_tokens: 16384
        quantization_type: no_quant   # or int8 (CPU, ONNX Runtime), fp8 (GPU, causal models)
      runtime:
        webserver_default_route: /rerank

Every key is checked before any work: an unknown key or a bad value fails with the key's full path.
Settings that only the checkpoint can refute (fp8 on a BERT model, NER on `encoder`) are checked by
`check_settings` right after the checkpoint is inspected, before the engine is exported.
"""

from __future__ import annotations

import contextlib
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from builder.errors import BuildError
from builder.inspect import CAUSAL_TYPES
from trident.engines import DEFAULT_ENGINE, engine_kind
from trident.spec import QUANTIZATIONS, ModelSpec
from trident.tasks import INFERENCE_ROUTES

if TYPE_CHECKING:
    from builder.build import BuildOptions

BASE_MODELS = ("encoder", "encoder_bert")
SOURCES = ("HF", "LOCAL", "REMOTE_URL", "GCS", "S3", "AZURE")
UNSUPPORTED_SOURCES = ("GCS", "S3", "AZURE")
ROUTES = INFERENCE_ROUTES
BERT_NO_QUANT = "BEI-Bert (BERT-family, bidirectional models) has no quantization support, FP16/BF16 only"
NER_NEEDS_BERT = "NER requires BEI-Bert (base_model: encoder_bert) and is not supported on BEI (base_model: encoder)"
DOWNLOAD_TIMEOUT_S = 60.0

# The keys each section may hold; anything else is refused by name.
KEYS: dict[str, tuple[str, ...]] = {
    "": ("trt_llm", "model_name"),
    "trt_llm": ("build", "runtime"),
    "trt_llm.build": ("base_model", "checkpoint_repository", "max_num_tokens", "quantization_type",
                      "num_builder_gpus"),
    "trt_llm.build.checkpoint_repository": ("source", "repo", "revision", "runtime_secret_name"),
    "trt_llm.runtime": ("webserver_default_route",),
}


@dataclass(frozen=True)
class BuildConfig:
    """A checked config. `model` is a hub id, a local folder or an http(s) URL, per `source`."""

    source: str
    model: str
    revision: str | None = None
    base_model: str = "encoder"
    max_num_tokens: int = 16384
    quantization: str = "no_quant"
    default_route: str | None = None
    name: str | None = None

    def build_options(self, model: str, out: Path, name: str | None = None, **extra: Any) -> BuildOptions:
        """BuildOptions for the checkpoint now at `model` (a REMOTE_URL archive is fetched first)."""
        from builder.build import BuildOptions

        return BuildOptions(model=model, out=out, name=name or self.name, revision=self.revision,
                            max_num_tokens=self.max_num_tokens, quantization=self.quantization,
                            default_route=self.default_route, base_model=self.base_model, **extra)


def load_build_config(path: Path) -> BuildConfig:
    """Read and check a YAML config file; relative LOCAL paths are taken from the file's folder."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise BuildError(f"cannot read the config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise BuildError(f"{path} is not valid YAML: {exc}") from None
    return parse_build_config(data, base_dir=path.resolve().parent)


def parse_build_config(data: object, base_dir: Path | None = None) -> BuildConfig:
    root = _section(data, "")
    trt_llm = _section(root.get("trt_llm"), "trt_llm", required=True)
    build = _section(trt_llm.get("build"), "trt_llm.build", required=True)
    runtime = _section(trt_llm.get("runtime", {}), "trt_llm.runtime")
    repository = _section(build.get("checkpoint_repository"), "trt_llm.build.checkpoint_repository", required=True)

    base_model = _choice(build, "trt_llm.build", "base_model", BASE_MODELS, default="encoder")
    quantization = _choice(build, "trt_llm.build", "quantization_type", QUANTIZATIONS, default="no_quant")
    if base_model == "encoder_bert" and quantization not in ("no_quant", "int8"):
        raise BuildError(f"trt_llm.build.quantization_type: {quantization!r} with base_model: encoder_bert: "
                         f"{BERT_NO_QUANT}; use quantization_type: no_quant")
    max_num_tokens = _positive_int(build, "trt_llm.build", "max_num_tokens", default=16384)
    _positive_int(build, "trt_llm.build", "num_builder_gpus", default=1)  # a GPU build setting: no effect here
    route = runtime.get("webserver_default_route")
    if route is not None and route not in ROUTES:
        raise BuildError(f"trt_llm.runtime.webserver_default_route: {route!r} is not a route Trident serves; "
                         f"use one of {', '.join(ROUTES)}")
    source, model, revision = _checkpoint(repository, base_dir)
    name = root.get("model_name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise BuildError("model_name: must be a non-empty string")
    return BuildConfig(source, model, revision, base_model, max_num_tokens, quantization, route, name)


def _section(value: object, path: str, required: bool = False) -> dict[str, Any]:
    where = path or "the config"
    if value is None and required:
        raise BuildError(f"{where}: missing (a mapping is required)")
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise BuildError(f"{where}: must be a mapping of keys, got {type(value).__name__}")
    known = KEYS[path]
    for key in value:
        if key not in known:
            full = f"{path}.{key}" if path else str(key)
            raise BuildError(f"{full}: unknown key; {where} accepts {', '.join(known)}")
    return value


def _choice(section: dict[str, Any], path: str, key: str, choices: tuple[str, ...], default: str) -> str:
    value = section.get(key, default)
    if value not in choices:
        raise BuildError(f"{path}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _positive_int(section: dict[str, Any], path: str, key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BuildError(f"{path}.{key}: must be a positive integer, got {value!r}")
    return value


def _checkpoint(repository: dict[str, Any], base_dir: Path | None) -> tuple[str, str, str | None]:
    path = "trt_llm.build.checkpoint_repository"
    source = repository.get("source", "HF")
    if source not in SOURCES:
        raise BuildError(f"{path}.source: {source!r} is not one of {', '.join(SOURCES)}")
    if source in UNSUPPORTED_SOURCES:
        raise BuildError(f"{path}.source: {source} is not supported yet; use HF, LOCAL (a folder) or "
                         "REMOTE_URL (an http(s) link to a .tar.gz or .zip of the checkpoint)")
    repo = repository.get("repo")
    if not isinstance(repo, str) or not repo.strip():
        raise BuildError(f"{path}.repo: missing; give the hub id, folder or URL of the checkpoint")
    revision = repository.get("revision")
    if revision is not None and not isinstance(revision, str):
        raise BuildError(f"{path}.revision: must be a string, got {revision!r}")
    secret = repository.get("runtime_secret_name")
    if secret is not None and not isinstance(secret, str):
        raise BuildError(f"{path}.runtime_secret_name: must be a string, got {secret!r}")
    if source == "REMOTE_URL" and urllib.parse.urlsplit(repo).scheme not in ("http", "https"):
        raise BuildError(f"{path}.repo: REMOTE_URL needs an http:// or https:// URL, got {repo!r}")
    folder = Path(repo).expanduser()
    if not folder.is_absolute() and base_dir is not None:
        folder = base_dir / folder
    if source == "LOCAL" and not folder.is_dir():
        raise BuildError(f"{path}.repo: {str(folder)!r} is not a folder")
    if source in ("LOCAL", "HF") and folder.is_dir():  # HF: a folder that exists wins over a hub id
        repo = str(folder)
    return source, repo, revision


def check_settings(spec: ModelSpec, base_model: str | None, quantization: str, default_route: str | None,
                   engine: str = DEFAULT_ENGINE) -> None:
    """What the checkpoint (and, for quantization, the engine and this machine's GPU) rules out, said before
    any export work starts."""
    causal = spec.model_type in CAUSAL_TYPES
    if spec.task_row.hybrid and not engine_kind(engine).several_outputs:
        raise BuildError(f"a hybrid (BGE-M3) model's dense, sparse and ColBERT outputs come from the ONNX graph "
                         f"(--engine {DEFAULT_ENGINE}); the {engine} engine does not run them yet")
    if spec.task == "ner" and base_model == "encoder":
        raise BuildError(NER_NEEDS_BERT)
    if base_model == "encoder_bert" and causal:
        raise BuildError(f"base_model: encoder_bert (BEI-Bert) serves bidirectional models; {spec.model_type} is "
                         "a causal model: use base_model: encoder")
    if quantization == "int8":
        if not engine_kind(engine).cpu_variants:  # int8 is a CPU variant: any architecture, the CPU engine
            raise BuildError(f"quantization_type: int8 is ONNX Runtime's CPU int8 (--engine {DEFAULT_ENGINE}); "
                             f"the {engine} engine has no int8 path")
    elif quantization != "no_quant":
        if not causal:
            raise BuildError(f"quantization_type: {quantization} on {spec.architecture}: {BERT_NO_QUANT}; "
                             "use quantization_type: no_quant")
        from builder.quantization import check_quantization, gpu_capability

        check_quantization(spec, quantization, engine, gpu_capability())
    if spec.task == "reranker" and spec.num_labels != 1:
        raise BuildError(f"a reranker has one output label; {spec.architecture} has {spec.num_labels}: "
                         "build it as a classifier (--task classifier) and use /predict")
    if default_route and default_route not in spec.task_row.routes:
        article = "an" if spec.task[0] in "aeiou" else "a"
        raise BuildError(f"webserver_default_route: {default_route} cannot serve {article} {spec.task} model; it can "
                         f"serve {', '.join(spec.task_row.routes)}")


@contextlib.contextmanager
def fetched_checkpoint(config: BuildConfig) -> Iterator[str]:
    """The checkpoint as `build` takes it: REMOTE_URL archives are downloaded and unpacked into a
    temporary folder that lives as long as the context; other sources pass through."""
    if config.source != "REMOTE_URL":
        yield config.model
        return
    with tempfile.TemporaryDirectory(prefix="trident-checkpoint-") as temp:
        yield str(download_checkpoint(config.model, Path(temp)))


def download_checkpoint(url: str, work_dir: Path) -> Path:
    """Fetch a .tar(.gz|.bz2|.xz) or .zip of a checkpoint over http(s) and unpack it safely."""
    archive = work_dir / "archive"
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise BuildError(f"could not download the checkpoint from {url}: {reason}") from None
    target = work_dir / "checkpoint"
    target.mkdir()
    if tarfile.is_tarfile(archive):
        _extract_tar(archive, target)
    elif zipfile.is_zipfile(archive):
        _extract_zip(archive, target)
    else:
        raise BuildError(f"{url} is neither a tar nor a zip archive")
    return _checkpoint_folder(target, url)


def _inside(root: Path, name: str) -> bool:
    destination = (root / name).resolve()
    return destination == root.resolve() or root.resolve() in destination.parents


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not _inside(target, member.name) or not (member.isfile() or member.isdir()):
                raise BuildError(f"the archive holds {member.name!r}, which is not a plain file inside it; "
                                 "refusing to unpack")
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: the library's own safety net too
            tar.extractall(target, filter="data")
        else:
            tar.extractall(target)  # every member was checked above


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            if not _inside(target, name):
                raise BuildError(f"the archive holds {name!r}, outside its own folder; refusing to unpack")
        zipped.extractall(target)


def _checkpoint_folder(root: Path, url: str) -> Path:
    """The unpacked folder holding config.json: the archive's root or its one top-level folder."""
    if (root / "config.json").is_file():
        return root
    candidates = [p.parent for p in root.rglob("config.json") if len(p.relative_to(root).parts) == 2]
    if len(candidates) == 1:
        return candidates[0]
    raise BuildError(f"the archive from {url} has no config.json at its top level or in one top-level folder")
