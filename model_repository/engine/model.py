"""Triton model: token ids -> pooled vectors, ONNX Runtime on CPU. Logic: trident.stages.EngineStage."""

from trident import tensors as T
from trident.stages import EngineStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = EngineStage
    input_names = (T.INPUT_IDS, T.TOKEN_TYPE_IDS, T.NUM_TOKENS)
    output_names = (T.POOLED,)
