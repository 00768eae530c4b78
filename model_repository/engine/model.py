"""Triton model: token ids -> pooled vectors or logits, ONNX Runtime on CPU.
Logic: trident.stages.EngineStage; tensors: those its config.pbtxt declares for the task."""

from trident.stages import EngineStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = EngineStage
