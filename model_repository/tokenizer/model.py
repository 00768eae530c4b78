"""Triton model: texts (and pairs) -> token ids (+ character offsets and word ids for NER).
Logic: trident.stages.TokenizerStage; tensors: those its config.pbtxt declares for the task."""

from trident.stages import TokenizerStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = TokenizerStage
