"""Nomic-BERT with `rotary_scaling_factor`: dynamic NTK rotary scaling, per sequence.

Nomic's published code (and transformers' `dynamic` rope) raise the rotary base once a sequence is longer
than the trained length L:

    base' = base * (f * n / L - (f - 1)) ** (d / (d - 2))        for n > L, else base

where n is the length of the padded batch: the same text then embeds differently next to a longer one.
Served, every input must embed as it does alone, so here n is each sequence's own length (the model's
answer for that text run alone, which is what the references compute). Everything else is
transformers' NomicBertModel.
"""

from __future__ import annotations

import torch
from huggingface_hub.dataclasses import strict
from torch import Tensor, nn
from transformers import NomicBertConfig, NomicBertModel


@strict
class TridentNomicBertConfig(NomicBertConfig):
    """NomicBertConfig with a `dynamic` rope `factor` and the trained length L past which it applies."""

    model_type = "trident_nomic_bert"
    max_trained_positions: int = 2048


class PerSequenceDynamicNTK(nn.Module):
    """cos / sin `[batch, seq, head_dim]` with each row's base from its own length (max position + 1)."""

    def __init__(self, config: TridentNomicBertConfig) -> None:
        super().__init__()
        self.base = float(config.rope_parameters["rope_theta"])
        self.factor = float(config.rope_parameters["factor"])
        self.trained_length = float(config.max_trained_positions)
        self.dim = config.head_dim

    def forward(self, x: Tensor, position_ids: Tensor) -> tuple[Tensor, Tensor]:
        lengths = position_ids.amax(dim=-1, keepdim=True).float() + 1  # [batch, 1]
        stretch = (self.factor * lengths / self.trained_length - (self.factor - 1)).clamp(min=1.0)
        base = self.base * stretch ** (self.dim / (self.dim - 2))
        # No buffer: from_pretrained materializes a model's non-persistent buffers only for its own classes.
        exponents = torch.arange(0, self.dim, 2, dtype=torch.int64, device=x.device).float() / self.dim
        inv_freq = 1.0 / (base ** exponents)  # [batch, dim / 2], as transformers computes it
        freqs = position_ids[..., None].float() * inv_freq[:, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


class TridentNomicBertModel(NomicBertModel):
    config_class = TridentNomicBertConfig

    def __init__(self, config: TridentNomicBertConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.rotary_emb = PerSequenceDynamicNTK(config)

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                position_ids: Tensor | None = None, **kwargs):
        if position_ids is None and attention_mask is not None:
            # Real tokens keep 0..n-1 and padding repeats the last one, so each row's max + 1 is its length.
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               **kwargs)
