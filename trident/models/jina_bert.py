"""Jina-BERT v2 (jina-embeddings-v2-*, jina-reranker-v1): BERT with ALiBi instead of positions and a gated
MLP. transformers has no class for it; this one is written from Jina's published description (the ALiBi
paper's slopes, the GLU variants) and keeps the published weight names, so a checkpoint loads as it is.

    scores   = q k^T / sqrt(d) + mask - slope_h * |i - j|         (symmetric ALiBi, no position table)
    h        = LayerNorm(x + dense(attention(x)))                  (attention.output)
    original: y = mlp.layernorm(h + wo(act(g[:, :I]) * g[:, I:])),   g = gated_layers(h)
    qk-post-norm (the code model): q and k pass LayerNorms (layer_norm_q / layer_norm_k) before the scores,
              h' = layer_norm_1(x + h),  y = layer_norm_2(h' + down_layer(u[:, :I] * act(u[:, I:]))),
              u = up_gated_layer(h')                               (here the second half is gated)

`act` is exact GELU (`geglu`) or ReLU (`reglu`). Slopes: for n heads, those of the largest power of two
p <= n, 2 ** (-8 k / p) for k = 1..p, then every other slope of 2p heads: head order matters.
"""

from __future__ import annotations

import math

import torch
from huggingface_hub.dataclasses import strict
from torch import Tensor, nn
from transformers import BertConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput

ACTIVATIONS = {"geglu": nn.GELU, "reglu": nn.ReLU}


@strict
class TridentJinaBertConfig(BertConfig):
    model_type = "trident_jina_bert"
    feed_forward_type: str = "geglu"
    qk_post_norm: bool = False  # the jina-bert-v2-qk-post-norm layout (jina-embeddings-v2-base-code)


def alibi_slopes(num_heads: int) -> list[float]:
    def power_of_two(n: int) -> list[float]:
        return [2 ** (-8 * k / n) for k in range(1, n + 1)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    closest = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


class JinaBertEmbeddings(nn.Module):
    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        return self.LayerNorm(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))


class JinaBertSelfAttention(nn.Module):
    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        if config.qk_post_norm:
            self.layer_norm_q = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.layer_norm_k = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(*x.shape[:2], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden: Tensor, bias: Tensor) -> Tensor:
        query, key = self.query(hidden), self.key(hidden)
        if hasattr(self, "layer_norm_q"):
            query, key = self.layer_norm_q(query), self.layer_norm_k(key)
        scores = self._heads(query) @ self._heads(key).transpose(-1, -2) / math.sqrt(self.head_dim)
        context = torch.softmax(scores + bias, dim=-1) @ self._heads(self.value(hidden))
        return context.transpose(1, 2).reshape(hidden.shape)


class JinaBertSelfOutput(nn.Module):
    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, context: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(context) + residual)


class JinaBertAttention(nn.Module):
    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.self = JinaBertSelfAttention(config)
        self.output = JinaBertSelfOutput(config)

    def forward(self, hidden: Tensor, bias: Tensor) -> Tensor:
        return self.output(self.self(hidden, bias), hidden)


class JinaBertGLUMLP(nn.Module):
    """The original layout: the first half of gated_layers is gated, the residual and LayerNorm inside."""

    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gated_layers = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = ACTIVATIONS[config.feed_forward_type]()
        self.wo = nn.Linear(config.intermediate_size, config.hidden_size)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        projected = self.gated_layers(hidden)
        gated, plain = projected[..., : self.intermediate_size], projected[..., self.intermediate_size :]
        return self.layernorm(hidden + self.wo(self.act(gated) * plain))


class JinaBertCodeMLP(nn.Module):
    """The qk-post-norm layout: the second half of up_gated_layer is gated; the layer adds and normalizes."""

    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.up_gated_layer = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.act = ACTIVATIONS[config.feed_forward_type]()
        self.down_layer = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        projected = self.up_gated_layer(hidden)
        up, gated = projected[..., : self.intermediate_size], projected[..., self.intermediate_size :]
        return self.down_layer(up * self.act(gated))


class JinaBertLayer(nn.Module):
    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.attention = JinaBertAttention(config)
        if config.qk_post_norm:
            self.mlp = JinaBertCodeMLP(config)
            self.layer_norm_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.layer_norm_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        else:
            self.mlp = JinaBertGLUMLP(config)

    def forward(self, hidden: Tensor, bias: Tensor) -> Tensor:
        attended = self.attention(hidden, bias)
        if not hasattr(self, "layer_norm_1"):
            return self.mlp(attended)
        attended = self.layer_norm_1(hidden + attended)
        return self.layer_norm_2(attended + self.mlp(attended))


class JinaBertEncoder(nn.Module):
    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(JinaBertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: Tensor, bias: Tensor) -> Tensor:
        for layer in self.layer:
            hidden = layer(hidden, bias)
        return hidden


class JinaBertPooler(nn.Module):
    """Tanh over the first token's dense projection: what the rerankers' classifier reads."""

    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden: Tensor) -> Tensor:
        return self.activation(self.dense(hidden[:, 0]))


class TridentJinaBertPreTrainedModel(PreTrainedModel):
    config_class = TridentJinaBertConfig
    base_model_prefix = "bert"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()


class TridentJinaBertModel(TridentJinaBertPreTrainedModel):
    def __init__(self, config: TridentJinaBertConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config)
        self.embeddings = JinaBertEmbeddings(config)
        self.encoder = JinaBertEncoder(config)
        self.pooler = JinaBertPooler(config) if add_pooling_layer else None
        self.post_init()

    def attention_bias(self, attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
        """`[batch, heads, seq, seq]`: the padding mask plus ALiBi's -slope * |i - j|, for any length."""
        seq = attention_mask.shape[1]
        positions = torch.arange(seq, device=attention_mask.device)
        distance = (positions[None, :] - positions[:, None]).abs().to(dtype)
        slopes = torch.tensor(alibi_slopes(self.config.num_attention_heads), dtype=dtype,
                              device=attention_mask.device)
        alibi = -slopes[:, None, None] * distance  # [heads, seq, seq]
        padding = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        return alibi[None] + padding

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                **kwargs) -> BaseModelOutputWithPooling:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.embeddings(input_ids, token_type_ids)
        hidden = self.encoder(hidden, self.attention_bias(attention_mask, hidden.dtype))
        pooled = self.pooler(hidden) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


class TridentJinaBertForSequenceClassification(TridentJinaBertPreTrainedModel):
    """jina-reranker-v1: the pooled [CLS] through one linear layer (BertForSequenceClassification's head)."""

    def __init__(self, config: TridentJinaBertConfig) -> None:
        super().__init__(config)
        self.bert = TridentJinaBertModel(config, add_pooling_layer=True)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                **kwargs) -> SequenceClassifierOutput:
        pooled = self.bert(input_ids, attention_mask, token_type_ids).pooler_output
        return SequenceClassifierOutput(logits=self.classifier(pooled))
