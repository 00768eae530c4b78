"""jina-embeddings-v3 with its LoRA task adapters applied at run time, the adapter chosen per input.

The backbone is transformers' JinaEmbeddingsV3 (XLM-R with rotary, post-norm, GELU MLP), which has no adapter
code. Here every linear layer and both embedding tables carry all adapters, stacked, and an input's adapter
index rides in its token type ids (the backbone's one token type is always 0): 0 runs the base weights,
i in 1..N the published adapter i - 1 (`config.adapters` names them). Per layer and token an adapter costs
two rank-r products, (x A^T) B^T, next to the layer's own x W^T: about 2 r (in + out) / (in * out) more work
(0.8% at 1024 x 1024, r = 4), and its weights are r (in + out) numbers per adapter.

The published weights W + (B_t A_t) * alpha / r (for an embedding table A_t B_t) are what an adapter computes;
the conversion stores B already scaled, with a zero adapter 0 in front.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub.dataclasses import strict
from torch import Tensor, nn
from transformers import JinaEmbeddingsV3Config, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling


@strict
class TridentJinaV3Config(JinaEmbeddingsV3Config):
    model_type = "trident_jina_v3"
    adapters: list | None = None  # task names, in the order of the published adapters
    lora_rank: int = 4

    @property
    def num_adapters(self) -> int:
        return 1 + len(self.adapters or [])  # 0: no adapter


class LoRALinear(nn.Module):
    """y = x W^T + b + (x A[a]^T) B[a]^T, with a each row's adapter (A: [adapters, r, in], B: [adapters, out, r])."""

    def __init__(self, fan_in: int, fan_out: int, adapters: int, rank: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(fan_out))
        self.lora_A = nn.Parameter(torch.zeros(adapters, rank, fan_in))
        self.lora_B = nn.Parameter(torch.zeros(adapters, fan_out, rank))

    def forward(self, x: Tensor, adapter: Tensor) -> Tensor:
        low_rank = x @ self.lora_A[adapter].transpose(1, 2)  # [batch, seq, r]
        return nn.functional.linear(x, self.weight, self.bias) + low_rank @ self.lora_B[adapter].transpose(1, 2)


class LoRAEmbedding(nn.Module):
    """E[t] + A[a, t] B[a]: the embedding table's adapters (A: [adapters, rows, r], B: [adapters, r, dim])."""

    def __init__(self, rows: int, dim: int, adapters: int, rank: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, dim))
        self.lora_A = nn.Parameter(torch.zeros(adapters, rows, rank))
        self.lora_B = nn.Parameter(torch.zeros(adapters, rank, dim))

    def forward(self, ids: Tensor, adapter: Tensor) -> Tensor:
        low_rank = self.lora_A[adapter[:, None], ids]  # [batch, seq, r]
        return self.weight[ids] + low_rank @ self.lora_B[adapter]


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class JinaV3Layer(nn.Module):
    def __init__(self, config: TridentJinaV3Config) -> None:
        super().__init__()
        hidden, adapters, rank = config.hidden_size, config.num_adapters, config.lora_rank
        self.num_heads = config.num_attention_heads
        self.qkv = LoRALinear(hidden, 3 * hidden, adapters, rank)
        self.out_proj = LoRALinear(hidden, hidden, adapters, rank)
        self.norm1 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.fc1 = LoRALinear(hidden, config.intermediate_size, adapters, rank)
        self.fc2 = LoRALinear(config.intermediate_size, hidden, adapters, rank)
        self.act = ACT2FN[config.hidden_act]
        self.norm2 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, bias: Tensor, cos: Tensor, sin: Tensor, adapter: Tensor) -> Tensor:
        batch, seq, hidden = x.shape
        q, k, v = (t.view(batch, seq, self.num_heads, -1).transpose(1, 2)
                   for t in self.qkv(x, adapter).chunk(3, dim=-1))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        context = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, seq, hidden)
        x = self.norm1(x + self.out_proj(context, adapter))
        return self.norm2(x + self.fc2(self.act(self.fc1(x, adapter)), adapter))


class TridentJinaV3Model(PreTrainedModel):
    config_class = TridentJinaV3Config
    base_model_prefix = "jina"

    def __init__(self, config: TridentJinaV3Config) -> None:
        super().__init__(config)
        hidden, adapters, rank = config.hidden_size, config.num_adapters, config.lora_rank
        self.word_embeddings = LoRAEmbedding(config.vocab_size, hidden, adapters, rank)
        self.token_type_embeddings = LoRAEmbedding(1, hidden, adapters, rank)
        self.emb_ln = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(JinaV3Layer(config) for _ in range(config.num_hidden_layers))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, LoRALinear | LoRAEmbedding):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
        if isinstance(module, LoRALinear):
            module.bias.data.zero_()
        if isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()

    def rotary(self, seq: int, device: torch.device) -> tuple[Tensor, Tensor]:
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        base = self.config.rope_parameters["rope_theta"]
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
        freqs = torch.arange(seq, device=device).float()[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                **kwargs) -> BaseModelOutputWithPooling:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        adapter = token_type_ids[:, 0] if token_type_ids is not None else torch.zeros_like(input_ids[:, 0])
        x = self.word_embeddings(input_ids, adapter) + self.token_type_embeddings(torch.zeros_like(input_ids), adapter)
        x = self.emb_ln(x)
        padding = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        cos, sin = self.rotary(input_ids.shape[1], input_ids.device)
        for layer in self.layers:
            x = layer(x, padding, cos.to(x.dtype), sin.to(x.dtype), adapter)
        return BaseModelOutputWithPooling(last_hidden_state=x)
