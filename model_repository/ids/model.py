"""Triton model: token ids sent by the client -> the engine's inputs (truncated or refused as too long).
Logic: trident.stages.IdsStage; tensors: those its config.pbtxt declares."""

from trident.stages import IdsStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = IdsStage
