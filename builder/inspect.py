"""Reading a checkpoint into a ModelSpec: task, pooling, normalization, lengths, labels, prompts.

Sources, in the order sentence-transformers itself trusts them: `modules.json` and the Pooling
module's config, `sentence_bert_config.json`, `config_sentence_transformers.json`, then `config.json`
and the tokenizer's own settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder import hybrid, multi_vector
from builder.errors import BuildError
from builder.families import spec_fields
from trident import heads
from trident.spec import ModelSpec
from trident.tasks import TASK_NAMES, task_of

CAUSAL_TYPES = {"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3_text", "phi3"}
# RoBERTa-style position ids start after the padding index, so two positions are never usable.
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}
ST_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "lasttoken",
}
UNSUPPORTED_POOLING_KEYS = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
)
DENSE_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# MLMTransformer: sentence-transformers 5.x's SPLADE encoder (6.x saves a Transformer with fill-mask).
SUPPORTED_ST_MODULES = {"Transformer", "MLMTransformer", "Pooling", "Dense", "Normalize", "SpladePooling",
                        "MultiVectorMask"}


def read_json(path: Path) -> dict[str, Any] | list[Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BuildError(f"{path} is not valid JSON: {exc}") from None


def inspect_checkpoint(
    model_dir: Path,
    name: str,
    task: str | None = None,
    pooling: str | None = None,
    max_length: int | None = None,
    trust_remote_code: bool = False,
) -> ModelSpec:
    config = read_json(model_dir / "config.json")
    if not isinstance(config, dict):
        raise BuildError(f"{model_dir}/config.json is missing or not an object")
    if config.get("auto_map"):
        check_remote_code(model_dir, config["auto_map"], trust_remote_code)
    architecture = (config.get("architectures") or ["AutoModel"])[0]
    model_type = str(config.get("model_type", ""))
    modules = _sentence_transformers_modules(model_dir)
    st_config = read_json(model_dir / "config_sentence_transformers.json") or {}
    task = task or ("hybrid" if hybrid.is_hybrid(model_dir) else None)
    task = task or ("multi_vector" if multi_vector.is_multi_vector(modules, st_config) else None)
    task = task or detect_task(architecture, config, modules)
    if task not in TASK_NAMES:
        raise BuildError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    causal = model_type in CAUSAL_TYPES
    row = task_of(task)
    # A decoder made bidirectional (builder/families/bidirectional.py) pools like an encoder by default.
    pools_last = causal and config.get("is_causal") is not False
    tokenizer_info = _tokenizer_info(model_dir)
    sides, hybrid_fields = {}, {}
    if row.hybrid:  # FlagEmbedding's dense vector: CLS, normalized, whatever the sentence-transformers files say
        head = heads.simple_head("cls", normalize=True)
        hybrid_fields = hybrid.hybrid_fields(model_dir, tokenizer_info["tokenizer"], _output_dim(config, task))
    elif row.sparse:
        head = sparse_head(model_dir, modules)
    elif row.multi_vector:
        head = multi_vector.multi_vector_head(model_dir, modules, tokenizer_info["tokenizer"])
        sides = multi_vector.read_sides(read_json(model_dir / "sentence_bert_config.json") or {},
                                        tokenizer_info["tokenizer"], tokenizer_info["padding_side"])
    else:
        head = embedding_head(model_dir, modules, pools_last, pooling) if row.pools else []
    spec = ModelSpec(
        name=name,
        task=task,
        architecture=architecture,
        model_type=model_type,
        max_length=max_length or _max_length(model_dir, config, tokenizer_info),
        dim=heads.output_dim(head, _output_dim(config, task)),
        head=head,
        padding_side=tokenizer_info["padding_side"],
        uses_token_type_ids=tokenizer_info["uses_token_type_ids"],
        pad_token_id=_pad_token_id(config, task, causal, tokenizer_info),
        vocab_size=int(config.get("vocab_size") or 0),  # ids past the embedding table are refused
        id2label={} if row.vectors else _id2label(config),
        sides=sides,
        hybrid=hybrid_fields,
        **_prompts(model_dir),
        **spec_fields(model_dir),  # what a converted family adds (builder/families)
    )
    return spec


def check_remote_code(model_dir: Path, auto_map: dict[str, Any], trust_remote_code: bool) -> None:
    """Refuse code shipped with a checkpoint unless trusted, and code from anywhere but its own folder."""
    if not trust_remote_code:
        raise BuildError(
            f"{model_dir.name} needs code shipped with the checkpoint (config.json has auto_map). "
            "Trident never runs model code unless you pass --trust-remote-code."
        )
    for reference in _class_references(auto_map):
        module = reference.rsplit(".", 1)[0]
        if "--" in module:  # "owner/repo--module.Class": code living in another hub repository
            raise BuildError(
                f"auto_map entry {reference!r} loads code from another repository; Trident only runs code "
                f"inside the checkpoint folder: copy {module.split('--')[-1]}.py into {model_dir} "
                "and point auto_map at it"
            )
        if not (model_dir / f"{module.replace('.', '/')}.py").is_file():
            raise BuildError(f"auto_map entry {reference!r} needs {module}.py, which is not in {model_dir}")


def _class_references(auto_map: dict[str, Any]) -> list[str]:
    """auto_map values are "module.Class", or [slow, fast] pairs for tokenizers (either may be null)."""
    references = []
    for value in auto_map.values():
        references += [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)]
    return references


def detect_task(architecture: str, config: dict[str, Any], modules: list[tuple[str, str]] = ()) -> str:
    if any(kind == "SpladePooling" for _, kind in modules):
        return "sparse"
    if architecture.endswith("ForSequenceClassification"):
        return "reranker" if _num_labels(config) == 1 else "classifier"
    if architecture.endswith("ForTokenClassification"):
        return "ner"
    return "embedding"


def _num_labels(config: dict[str, Any]) -> int:
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_labels", 2))


def _id2label(config: dict[str, Any]) -> dict[str, str]:
    labels = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(_num_labels(config))}
    return {str(k): str(v) for k, v in labels.items()}


def _output_dim(config: dict[str, Any], task: str) -> int:
    if task_of(task).sparse:  # one value per vocabulary entry
        return int(config["vocab_size"])
    if task_of(task).vectors:
        return int(config.get("hidden_size") or config.get("d_model") or config.get("dim") or config.get("n_embd"))
    return _num_labels(config)


def _sentence_transformers_modules(model_dir: Path) -> list[tuple[str, str]]:
    """(module path, class name) in modules.json order, refusing modules the engines do not reproduce."""
    modules = read_json(model_dir / "modules.json") or []
    found = []
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in SUPPORTED_ST_MODULES:
            raise BuildError(
                f"sentence-transformers module {kind!r} ({module.get('path')}) is not supported yet; "
                f"supported: {', '.join(sorted(SUPPORTED_ST_MODULES))}"
            )
        found.append((str(module.get("path", "")), kind))
    return found


def embedding_head(model_dir: Path, modules: list[tuple[str, str]], causal: bool, pooling: str | None) -> heads.Head:
    """The modules after the Transformer as a head (trident.heads); `pooling` overrides the Pooling's mode.

    A checkpoint without modules.json pools as sentence-transformers would guess: last token for
    decoders, mean otherwise.
    """
    head: heads.Head = []
    for path, kind in modules:
        if kind == "Pooling":
            head.append(heads.pooling(pooling or _pooling_from_config(model_dir / path / "config.json")))
        elif kind == "Dense":
            head.append(dense_module(model_dir, path))
        elif kind == "Normalize":
            head.append({"type": "Normalize"})
    if not head or head[0]["type"] != "Pooling":
        head.insert(0, heads.pooling(pooling or ("lasttoken" if causal else "mean")))
    try:
        return heads.check(head)
    except heads.HeadError as exc:
        raise BuildError(f"{model_dir}/modules.json: {exc}") from None


def sparse_head(model_dir: Path, modules: list[tuple[str, str]]) -> heads.Head:
    """A SPLADE model's SpladePooling, as sentence-transformers 6 or 5.x saved it (the same keys, but for the
    dimension, which is the vocabulary's anyway); without one (`--task sparse` on a *ForMaskedLM), TEI's
    `--pooling splade`: max of log1p(relu)."""
    splade = [path for path, kind in modules if kind == "SpladePooling"]
    config = (read_json(model_dir / splade[0] / "config.json") or {}) if splade else {}
    others = [kind for _, kind in modules if kind not in ("Transformer", "MLMTransformer", "SpladePooling")]
    if others:
        raise BuildError(f"{model_dir}/modules.json: a sparse model's SpladePooling must be the only module after "
                         f"its encoder; it also has {', '.join(others)}")
    try:
        return heads.check([heads.splade_pooling(str(config.get("pooling_strategy", "max")),
                                                 str(config.get("activation_function", "relu")))])
    except heads.HeadError as exc:
        raise BuildError(f"{model_dir / (splade[0] if splade else '')}: {exc}") from None


def dense_module(model_dir: Path, path: str) -> dict[str, Any]:
    """A sentence-transformers Dense module: its config, and where its weights are."""
    config = read_json(model_dir / path / "config.json")
    if not isinstance(config, dict) or "in_features" not in config or "out_features" not in config:
        raise BuildError(f"{model_dir / path}/config.json is missing or has no in_features / out_features")
    if config.get("use_residual"):  # sentence-transformers >= 5.7: the engines add no residual
        raise BuildError(f"{model_dir / path}: a Dense module with use_residual is not supported yet")
    if not any((model_dir / path / name).is_file() for name in DENSE_WEIGHT_FILES):
        raise BuildError(f"{model_dir / path} has none of {', '.join(DENSE_WEIGHT_FILES)}")
    activation = str(config.get("activation_function") or "torch.nn.modules.linear.Identity").rsplit(".", 1)[-1]
    return {"type": "Dense", "path": path, "in_features": int(config["in_features"]),
            "out_features": int(config["out_features"]), "bias": bool(config.get("bias", True)),
            "activation": activation}


def _pooling_from_config(path: Path) -> str:
    config = read_json(path) or {}
    if isinstance(config.get("pooling_mode"), str):
        mode = {"cls": "cls", "mean": "mean", "lasttoken": "lasttoken"}.get(config["pooling_mode"])
        if mode:
            return mode
    chosen = [mode for key, mode in ST_POOLING_KEYS.items() if config.get(key)]
    unsupported = [key for key in UNSUPPORTED_POOLING_KEYS if config.get(key)]
    if unsupported or len(chosen) != 1:
        raise BuildError(
            f"{path}: pooling {unsupported or chosen or 'none'} is not supported; "
            "Trident pools with exactly one of cls, mean or lasttoken (override with --pooling)"
        )
    return chosen[0]


def _tokenizer_info(model_dir: Path) -> dict[str, Any]:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, use_fast=True)
    except Exception as exc:
        raise BuildError(f"cannot load the tokenizer of {model_dir}: {exc}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise BuildError(f"{model_dir} has no fast (tokenizers) tokenizer; Trident needs tokenizer.json")
    return {
        "tokenizer": tokenizer,
        "padding_side": tokenizer.padding_side,
        "uses_token_type_ids": "token_type_ids" in tokenizer.model_input_names,
        "model_max_length": tokenizer.model_max_length,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    }


def _pad_token_id(config: dict[str, Any], task: str, causal: bool, tokenizer_info: dict[str, Any]) -> int:
    """The id the engine pads with. A causal *ForSequenceClassification head scores the last token that is
    not config.pad_token_id, so its padding must be exactly that id, whatever the tokenizer's is."""
    if not causal or not task_of(task).scores_sequences:
        return tokenizer_info["pad_token_id"]
    if config.get("pad_token_id") is None:
        raise BuildError(
            "config.json has no pad_token_id: transformers' causal *ForSequenceClassification then cannot find "
            f"the last token of a padded input. Set pad_token_id in config.json (the tokenizer's is "
            f"{tokenizer_info['pad_token_id']})"
        )
    return int(config["pad_token_id"])


def _max_length(model_dir: Path, config: dict[str, Any], tokenizer_info: dict[str, Any]) -> int:
    """sentence-transformers' max_seq_length wins, else the tokenizer's; never past the positions."""
    positions = config.get("max_position_embeddings")
    usable = positions - POSITION_OFFSET.get(config.get("model_type", ""), 0) if positions else None
    st_config = read_json(model_dir / "sentence_bert_config.json") or {}
    preferred = st_config.get("max_seq_length") or tokenizer_info["model_max_length"]
    lengths = [int(c) for c in (preferred, usable) if isinstance(c, int) and 0 < c < 1_000_000]
    if not lengths:
        raise BuildError("cannot tell the model's maximum sequence length; pass --max-length")
    return min(lengths)


def _prompts(model_dir: Path) -> dict[str, Any]:
    config = read_json(model_dir / "config_sentence_transformers.json") or {}
    prompts = {str(k): str(v) for k, v in (config.get("prompts") or {}).items()}
    default = config.get("default_prompt_name")
    return {"prompts": prompts, "default_prompt_name": default if default in prompts else None}


def save_tokenizer(model_dir: Path, out_file: Path) -> None:
    """The exact fast tokenizer transformers uses, as one tokenizer.json for the Triton model."""
    _tokenizer_info(model_dir)["tokenizer"].backend_tokenizer.save(str(out_file))
