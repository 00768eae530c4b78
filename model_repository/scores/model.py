"""Triton model: reranker / classifier logits -> scores (sigmoid, softmax or raw).
Logic: trident.task_stages.ScoresStage."""

from trident.task_stages import ScoresStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = ScoresStage
