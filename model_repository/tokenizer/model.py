"""Triton model: texts (and pairs) -> token ids. Logic: trident.stages.TokenizerStage."""

from trident import tensors as T
from trident.stages import TokenizerStage
from trident.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    stage_class = TokenizerStage
    input_names = (T.TEXT, T.TEXT_PAIR, T.TRUNCATE, T.TRUNCATE_LEFT)
    output_names = (T.INPUT_IDS, T.TOKEN_TYPE_IDS, T.NUM_TOKENS)
