"""The openvino-int8 variant: NNCF post-training quantization of weights and activations, SmoothQuant-scaled.

Calibrated on builder/calibration.py's texts (not the gate's). SmoothQuant moves activation outliers into the
weights before the activations get their per-tensor int8 scales; the MIXED preset keeps activations
asymmetric. Whether the result is accurate enough is the gate's call (builder/variants.py): on
all-MiniLM-L6-v2 it is not (min cosine ~0.97 to float32), so a build keeps another variant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from trident.batching import padded_feeds
from trident.spec import ModelSpec

SMOOTH_QUANT_ALPHA = 0.5


def quantize_openvino_int8(model_dir: Path, spec: ModelSpec, onnx_file: Path, target: Path,
                           progress: Callable[[str], None]) -> None:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from transformers import AutoTokenizer

    from builder.calibration import CALIBRATION_TEXTS
    from builder.parity import tokenize

    logging.getLogger("nncf").setLevel(logging.WARNING)
    model = ov.Core().read_model(str(onnx_file))
    names = {name for port in model.inputs for name in port.get_names()}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    texts = [(t, t) for t in CALIBRATION_TEXTS] if spec.task_row.pairs else list(CALIBRATION_TEXTS)
    ids, types = tokenize(tokenizer, spec, texts)
    feeds = [padded_feeds([row], None if types is None else [types[i]], names, spec.pad_token_id, spec.padding_side,
                          None) for i, row in enumerate(ids)]
    progress(f"openvino-int8: NNCF on {len(feeds)} calibration texts (SmoothQuant alpha {SMOOTH_QUANT_ALPHA})")
    quantized = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                              preset=nncf.QuantizationPreset.MIXED, subset_size=len(feeds),
                              advanced_parameters=AdvancedQuantizationParameters(
                                  smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA)))
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target), compress_to_fp16=False)
