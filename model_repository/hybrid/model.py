"""Triton model: a hybrid (BGE-M3) model's dense, sparse and ColBERT outputs, those its ensemble maps.
Logic: trident.task_stages.HybridStage; tensors: those its config.pbtxt declares."""

from trident.task_stages import HybridStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = HybridStage
