"""Triton model: pooled vectors -> embeddings (Matryoshka, normalize). Logic: trident.stages."""

from trident import tensors as T
from trident.stages import EmbeddingPostprocessStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = EmbeddingPostprocessStage
    input_names = (T.POOLED, T.NORMALIZE, T.DIMENSIONS)
    output_names = (T.EMBEDDINGS,)
