"""`--engine torch`: the engine files are the checkpoint itself, checked through TorchEngine before writing.

The Triton engine model loads `checkpoint/` with transformers (fp16 / bf16 on the GPU, float32 on a CPU)
and, for `quantization_type: fp8`, quantizes its linear layers at load: the same code the FP8 gate below ran.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.errors import BuildError
from trident.gate import TOLERANCES, gate
from trident.heads import dense_modules
from trident.spec import ModelSpec

_CHECKPOINT_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
                     "pytorch_model.bin.index.json")

Progress = Callable[[str], None]


def stage_checkpoint(model_dir: Path, dest: Path, spec: ModelSpec) -> Path:
    """Copy what `from_pretrained` needs (config and weights, no tokenizer: the tokenizer model has it),
    and the folders of the head's Dense modules."""
    dest.mkdir(parents=True)
    for pattern in _CHECKPOINT_FILES:
        for file in sorted(model_dir.glob(pattern)):
            shutil.copyfile(file, dest / file.name)
    for module in dense_modules(spec.head):
        shutil.copytree(model_dir / module["path"], dest / module["path"])
    if not any(dest.glob("*.safetensors")) and not any(dest.glob("*.bin")):
        raise BuildError(f"{model_dir} has no *.safetensors or pytorch_model*.bin weights for the torch engine")
    return dest


def check_torch_engine(model_dir: Path, spec: ModelSpec, progress: Progress, trust_remote_code: bool = False
                       ) -> dict[str, Any]:
    """TorchEngine (unquantized, as it runs here) against transformers in float32, held to the float32 gate, or
    to the half-precision one where it runs in fp16 / bf16 (trident.gate); then the FP8 gate."""
    from transformers import AutoTokenizer

    from builder.parity import default_texts, summary, tokenize, torch_reference
    from builder.quantization import FP8_KINDS, check_fp8_accuracy, fp8_accuracy
    from trident.engines.torch.engine import TorchEngine

    if trust_remote_code:
        raise BuildError("--engine torch does not run code shipped with a checkpoint; use --engine onnxruntime")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    ids, types = tokenize(tokenizer, spec, default_texts(spec))
    engine = TorchEngine.load(model_dir, spec, quantization="no_quant")
    dtype = str(next(engine.model.parameters()).dtype).removeprefix("torch.")
    progress(f"checking the torch engine ({dtype} on {engine.device}, {engine.attn} attention) against transformers")
    actual = engine.run(ids, types)
    del engine
    tolerance = "float32" if dtype == "float32" else "half"
    report = gate(torch_reference(model_dir, spec, ids, types), actual, tolerance, logits=spec.task_row.logits)
    if not report.passed:
        raise BuildError(f"the torch engine ({dtype}) does not match transformers, nothing was written: max abs diff "
                         f"{report.max_abs_diff:.3e}, min cosine {report.min_cosine:.6f} over {report.num_texts} texts "
                         f"(needs {TOLERANCES[tolerance].describe()})")
    parity: dict[str, Any] = {**summary(report, tolerance), "dtype": dtype}
    if spec.quantization in FP8_KINDS:
        progress("measuring FP8 against the unquantized engine")
        fp8 = fp8_accuracy(model_dir, spec, ids)
        check_fp8_accuracy(fp8)
        parity["fp8"] = fp8.to_dict()
    spec.dtype = dtype
    return parity
