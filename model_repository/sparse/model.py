"""Triton model: a SPLADE model's pooled vocabulary vectors -> their non-zero entries (or the k largest).
Logic: trident.task_stages.SparseStage."""

from trident.task_stages import SparseStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = SparseStage
