"""Triton model: per-token logits + offsets + word ids -> NER entities as JSON, one list per text.
Logic: trident.task_stages.NerStage (aggregation: trident.ner)."""

from trident.task_stages import NerStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = NerStage
