"""The openvino-int8 variant: every MatMul in int8, static where SmoothQuant can keep it accurate, dynamic elsewhere.

Measured on all-MiniLM-L6-v2 (bench/int8_sensitivity.py): NNCF's static int8 of every MatMul (per-tensor
activation scales from the calibration texts, SmoothQuant alpha 0.5) is ~1.6x openvino-bf16 but fails the gate
(min cosine 0.955, recall@10 0.895). Left in float one role at a time, the FFN down projections are what loses the
most (all else int8: 0.989 / 0.955; only they int8: 0.966 / 0.894), then the attention output projections (only
they int8: 0.9925); the q / k / v and FFN up projections and the attention's own products cost little (0.997+).
The difference is where their inputs come from: q / k / v and FFN up read a LayerNorm, into which SmoothQuant
folds its per-channel scales, so one static scale per tensor fits; FFN down reads the GELU's output and the
attention output reads the attention's, with outliers no per-tensor scale fits and no LayerNorm to smooth.

So: NNCF static int8 (SmoothQuant, MIXED preset: asymmetric activations) for the MatMuls fed by a LayerNorm and the
attention's activation products; the other constant-weight MatMuls (`dynamic_matmuls`) get int8 weights
(nncf.compress_weights, per output channel) and OpenVINO quantizes their activations at run time, per token in
groups of DYNAMIC_GROUP values (trident/engines/openvino.py), so every MatMul runs on int8 kernels. The rest of
the graph runs in bf16 where the CPU has it (trident/engines/openvino.py). Calibrated on builder/calibration.py's
texts, never on the gate's; whether it is accurate enough stays the gate's call (builder/variants.py).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from trident.batching import padded_feeds
from trident.spec import ModelSpec

SMOOTH_QUANT_ALPHA = 0.5
SMOOTHABLE_INPUTS = ("LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization")


def dynamic_matmuls(onnx_file: Path) -> list[str]:
    """The MatMuls with a constant weight whose input no LayerNorm produces (the attention output and FFN down
    projections of a BERT): SmoothQuant cannot smooth them, so they are quantized at run time instead."""
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    producers = {out: node.op_type for node in model.graph.node for out in node.output}
    return [node.name for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in weights
            and producers.get(node.input[0]) not in SMOOTHABLE_INPUTS]


def quantize_openvino_int8(model_dir: Path, spec: ModelSpec, onnx_file: Path, target: Path,
                           progress: Callable[[str], None]) -> None:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from transformers import AutoTokenizer

    from builder.calibration import CALIBRATION_TEXTS
    from builder.parity import tokenize

    logging.getLogger("nncf").setLevel(logging.WARNING)
    core = ov.Core()
    model = core.read_model(str(onnx_file))
    names = {name for port in model.inputs for name in port.get_names()}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    texts = [(t, t) for t in CALIBRATION_TEXTS] if spec.task_row.pairs else list(CALIBRATION_TEXTS)
    ids, types = tokenize(tokenizer, spec, texts)
    feeds = [padded_feeds([row], None if types is None else [types[i]], names, spec.pad_token_id, spec.padding_side,
                          None) for i, row in enumerate(ids)]
    dynamic = dynamic_matmuls(onnx_file)
    progress(f"openvino-int8: NNCF static int8 on {len(feeds)} calibration texts (SmoothQuant alpha "
             f"{SMOOTH_QUANT_ALPHA}); {len(dynamic)} MatMuls no LayerNorm feeds get dynamic int8")
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds),
                              ignored_scope=nncf.IgnoredScope(names=dynamic, validate=False) if dynamic else None,
                              advanced_parameters=AdvancedQuantizationParameters(
                                  smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not dynamic:
        ov.save_model(quantized, str(target), compress_to_fp16=False)
        return
    with tempfile.TemporaryDirectory(dir=target.parent) as folder:  # read back: the static weights are int8 now
        static = Path(folder) / "static.xml"
        ov.save_model(quantized, str(static), compress_to_fp16=False)
        compressed = nncf.compress_weights(core.read_model(str(static)), mode=nncf.CompressWeightsMode.INT8_ASYM)
        ov.save_model(compressed, str(target), compress_to_fp16=False)
        del compressed
