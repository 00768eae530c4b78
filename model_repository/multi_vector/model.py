"""Triton model: a multi-vector model's token vectors -> the normalized vectors of the tokens that score.
Logic: trident.task_stages.MultiVectorStage (sides and masks: trident.multi_vector)."""

from trident.task_stages import MultiVectorStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = MultiVectorStage
