"""TorchEngine: the engine contract (`trident.engines.contract.Engine`) over a transformers model in PyTorch.

    run(unpadded token id sequences[, token type ids]) -> one float32 array per input, in the caller's order

On CUDA the model runs in float16 (bidirectional) or bfloat16 (causal), optionally with FP8 linear layers;
on CPU in float32, which is what the tests compare with transformers. Two batch layouts:

- varlen (embeddings of the model types in `attention.VARLEN_MODEL_TYPES`): sequences packed end to end
  up to `spec.max_num_tokens` tokens, attention per sequence, pooling over the packed rows. No padding.
- padded (everything else, and wherever the varlen kernel is missing): length-sorted batches of
  rows x longest <= max_num_tokens, padded on `spec.padding_side`, SDPA (eager where a model has no SDPA).

`compile` compiles each repeated transformer block with torch.compile (regional compilation: one block's
compile time, not the whole model's); `cuda_graphs` also replays them as CUDA graphs, which needs the
static shapes that `packing.pack(static_shapes=True)` gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trident import heads
from trident import tensors as T
from trident.batching import unpad_rows
from trident.engines.torch import attention
from trident.engines.torch.fp8 import fp8_supported, quantize_linears
from trident.engines.torch.packing import pack, pad, padded_position_ids, plan_batches, plan_packed
from trident.head_layers import DenseStack, pool_packed, pool_padded, splade_pool_padded
from trident.models import register as register_trident_models
from trident.spec import ModelSpec
from trident.tasks import task_of

CAUSAL_MODEL_TYPES = frozenset({"qwen2", "qwen3", "llama", "mistral", "gemma", "gemma2", "gemma3_text", "phi3"})
# RoBERTa-style models number positions from padding_idx + 1.
OFFSET_POSITION_TYPES = frozenset({"roberta", "xlm-roberta", "camembert"})
GPU_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
ATTENTIONS = ("auto", "varlen", "padded")


@dataclass(frozen=True)
class EngineOptions:
    attention: str = "auto"  # auto: varlen where supported and fast on this device, else padded
    compile: bool | None = None  # None: on CUDA only
    cuda_graphs: bool = False  # CUDA + varlen only
    compile_backend: str = "inductor"  # tests use "eager" to check the wiring without codegen
    max_sequences: int = 4096  # sequences per packed batch
    fp8_kernel: bool | None = None  # None: torch._scaled_mm where the GPU has FP8, else the float reference

    def __post_init__(self) -> None:
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def serving_dtype(spec: ModelSpec, device: torch.device) -> torch.dtype:
    """float32 on CPU; on a GPU the spec's dtype if it names a half type, else fp16 / bf16 (causal; FP8 too)."""
    if device.type != "cuda":
        return torch.float32
    if spec.dtype in ("float16", "bfloat16"):
        return GPU_DTYPES[spec.dtype]
    causal = spec.model_type in CAUSAL_MODEL_TYPES
    return torch.bfloat16 if causal or spec.quantization == "fp8" else torch.float16


def model_class(task: str) -> type:
    import transformers

    return getattr(transformers, task_of(task).auto_class)


def sliding_window(config: object) -> int | None:
    if not getattr(config, "use_sliding_window", True):
        return None
    return getattr(config, "sliding_window", None) or None


def choose_attention(spec: ModelSpec, config: object, device: torch.device, requested: str) -> str:
    """"varlen" or "padded". Asking for varlen where it cannot serve the model is an error, not a fallback."""
    eligible = spec.task_row.dense_vectors and spec.model_type in attention.VARLEN_MODEL_TYPES
    if requested == "varlen" and not eligible:
        raise ValueError(f"varlen attention serves embeddings of {sorted(attention.VARLEN_MODEL_TYPES)}; "
                         f"this is a {spec.model_type} {spec.task} model: use padded attention")
    if requested != "auto":
        return requested
    fast = attention.kernel_available(device, spec.model_type in CAUSAL_MODEL_TYPES, sliding_window(config))
    return "varlen" if eligible and fast else "padded"


def load_model(model_dir: Path, spec: ModelSpec, device: torch.device, dtype: torch.dtype,
               attn: str) -> nn.Module:
    """The checkpoint in eval mode on `device`; `attn` "padded" tries SDPA, then eager (Gemma 2 has no SDPA)."""
    from transformers import AutoConfig

    register_trident_models()  # a converted family may be one of Trident's own classes
    if attn == "varlen":
        attention.register()
    implementations = [attention.VARLEN] if attn == "varlen" else ["sdpa", "eager"]
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    errors = []
    for implementation in implementations:
        try:
            model = model_class(spec.task).from_pretrained(
                model_dir, config=config, local_files_only=True, dtype=dtype, attn_implementation=implementation
            )
            return model.to(device).eval()
        except (ValueError, ImportError) as exc:
            errors.append(f"{implementation}: {exc}")
    raise ValueError(f"cannot load {model_dir}: {'; '.join(errors)}")


def set_attention(model: nn.Module, implementation: str) -> None:
    """Switch a loaded model's attention (transformers >= 4.5x has set_attn_implementation)."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(implementation)
    else:
        model.config._attn_implementation = implementation


class TorchEngine:
    def __init__(self, model: nn.Module, spec: ModelSpec, attn: str, *, device: torch.device,
                 options: EngineOptions | None = None, pad_id: int | None = None) -> None:
        """Wrap a loaded model (`load` does the loading). `attn` is "varlen" or "padded", as loaded."""
        self.options = options or EngineOptions()
        self.spec, self.model, self.attn, self.device = spec, model, attn, device
        self.pad_id = spec.pad_token_id if pad_id is None else pad_id
        config = model.config
        self.position_offset = (config.pad_token_id + 1) if spec.model_type in OFFSET_POSITION_TYPES else 0
        self.fp8_layers: list[str] = []
        self.dense: nn.Module = nn.Identity()  # the head's Dense modules after pooling (`load` sets them)
        if self.options.cuda_graphs and (device.type != "cuda" or attn != "varlen"):
            raise ValueError("cuda_graphs needs a CUDA device and varlen attention")

    @classmethod
    def load(cls, model_dir: Path, spec: ModelSpec, *, device: torch.device | str | None = None,
             options: EngineOptions | None = None, quantization: str | None = None) -> TorchEngine:
        """Load `model_dir` for `spec`, quantize (spec.quantization unless given) and compile as the options say."""
        from transformers import AutoConfig

        register_trident_models()
        options = options or EngineOptions()
        device = torch.device(device) if device is not None else default_device()
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        attn = choose_attention(spec, config, device, options.attention)
        model = load_model(model_dir, spec, device, serving_dtype(spec, device), attn)
        engine = cls(model, spec, attn, device=device, options=options)
        engine.dense = DenseStack(spec.head, Path(model_dir)).to(device).eval()
        if (quantization or spec.quantization) == "fp8":
            engine.quantize_fp8()
        engine.compile()
        return engine

    @classmethod
    def wrap(cls, model: nn.Module, spec: ModelSpec, *, options: EngineOptions | None = None) -> TorchEngine:
        """An engine over a model already in memory (benchmarks): switches it to the chosen attention."""
        options = options or EngineOptions()
        device = next(model.parameters()).device
        attn = choose_attention(spec, model.config, device, options.attention)
        if attn == "varlen":
            attention.register()
        set_attention(model, attention.VARLEN if attn == "varlen" else "sdpa")
        return cls(model.eval(), spec, attn, device=device, options=options)

    def quantize_fp8(self) -> list[str]:
        """FP8 linear layers in every transformer block; the kernel where the GPU has FP8, else the reference."""
        use_kernel = self.options.fp8_kernel if self.options.fp8_kernel is not None else fp8_supported(self.device)
        self.fp8_layers = quantize_linears(self.model, use_kernel)
        if not self.fp8_layers:
            raise ValueError("no linear layer of this model can be quantized to FP8")
        return self.fp8_layers

    def compile(self) -> int:
        """torch.compile each block of the model's layer lists (when options say so); returns how many."""
        wanted = self.options.compile if self.options.compile is not None else self.device.type == "cuda"
        if not wanted:
            return 0
        mode = "reduce-overhead" if self.options.cuda_graphs else None
        import torch._dynamo

        # Blocks share one compiled code object; its variants (shapes, FP8 layers) must not hit the default limit
        # of 8, past which dynamo silently runs the block eagerly.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        blocks = [block for module in self.model.modules() if isinstance(module, nn.ModuleList) for block in module]
        for block in blocks:
            block.compile(backend=self.options.compile_backend, mode=mode, dynamic=not self.options.cuda_graphs)
        return len(blocks)

    def run(self, sequences: list[np.ndarray], token_type_ids: list[np.ndarray] | None = None,
            output: str | None = None, attention: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Per input: `[dim]` embeddings, `[num_labels]` logits, or `[len_i, num_labels]` NER logits; with
        `output` T.TOKEN_EMBEDDINGS, an embedding model's `[len_i, hidden]` last hidden state (a multi-vector
        model's projected token vectors). `attention`: per input, the tokens that may be attended to (padded
        attention only)."""
        output = output or self.spec.task_row.engine_output
        ids = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        if any(len(s) == 0 for s in ids):
            raise ValueError("empty token sequence")
        types = None
        if token_type_ids is not None:
            if len(token_type_ids) != len(ids):
                raise ValueError(f"{len(token_type_ids)} token_type_ids for {len(ids)} sequences")
            types = [np.asarray(t, dtype=np.int64).reshape(-1) for t in token_type_ids]
            if any(len(t) != len(s) for t, s in zip(types, ids, strict=True)):
                raise ValueError("each token_type_ids row must match its sequence's length")
        lengths = [len(s) for s in ids]
        if self.attn == "varlen":
            if attention is not None:
                raise ValueError("varlen attention attends to every token: serve this model with padded attention")
            groups = plan_packed(lengths, self.spec.max_num_tokens, self.options.max_sequences)
            forward = self._run_packed
        else:
            groups = plan_batches(lengths, self.spec.max_num_tokens)
            forward = self._run_padded
        results: list[np.ndarray | None] = [None] * len(ids)
        with torch.inference_mode():
            for group in groups:
                outputs = forward([ids[i] for i in group], None if types is None else [types[i] for i in group],
                                  output, None if attention is None else [attention[i] for i in group])
                for index, row in zip(group, outputs, strict=True):
                    results[index] = row
        return [r for r in results if r is not None]

    def _type_ids(self, types: list[np.ndarray] | None, ids: list[np.ndarray]) -> list[np.ndarray] | None:
        """Token types only for models that take them; zeros when the caller sent none."""
        if not self.spec.uses_token_type_ids:
            return None
        return types if types is not None else [np.zeros_like(s) for s in ids]

    def _run_packed(self, ids: list[np.ndarray], types: list[np.ndarray] | None, output: str,
                    attention: None = None) -> list[np.ndarray]:
        """`attention` must be None: run() sends masked batches to the padded path."""
        batch = pack(ids, self._type_ids(types, ids), position_offset=self.position_offset, pad_id=self.pad_id,
                     static_shapes=self.options.cuda_graphs).to(self.device)
        extra = {} if batch.token_type_ids is None else {"token_type_ids": batch.token_type_ids.unsqueeze(0)}
        out = self.model(
            input_ids=batch.input_ids.unsqueeze(0), position_ids=batch.position_ids.unsqueeze(0),
            cu_seq_lens_q=batch.cu_seqlens, cu_seq_lens_k=batch.cu_seqlens,
            max_length_q=batch.max_seqlen, max_length_k=batch.max_seqlen, **extra,
        )
        if output == T.TOKEN_EMBEDDINGS:  # each sequence's own rows of the packed hidden states
            hidden, cu = out.last_hidden_state[0].float().cpu().numpy(), batch.cu_seqlens.cpu().numpy()
            return [hidden[cu[i] : cu[i + 1]] for i in range(batch.num_sequences)]
        pooled = self.dense(pool_packed(out.last_hidden_state[0], batch.cu_seqlens, self.spec.pooling or "mean",
                                        batch.num_sequences))
        return list(pooled.cpu().numpy())

    def _run_padded(self, ids: list[np.ndarray], types: list[np.ndarray] | None, output: str,
                    attention: list[np.ndarray] | None = None) -> list[np.ndarray]:
        side = self.spec.padding_side
        input_ids, mask = pad(ids, self.pad_id, side)
        feeds = {"input_ids": input_ids, "attention_mask": mask if attention is None else pad(attention, 0, side)[0]}
        type_ids = self._type_ids(types, ids)
        if type_ids is not None:
            feeds["token_type_ids"] = pad(type_ids, 0, side)[0]
        if side == "left":  # positions from the mask, or left padding would shift every token
            feeds["position_ids"] = padded_position_ids(mask, self.position_offset)
        tensors = {k: torch.from_numpy(v).to(self.device, non_blocking=True) for k, v in feeds.items()}
        out = self.model(**tensors)
        if output == T.POOLED:
            return list(self._pooled(out, tensors["attention_mask"]).cpu().numpy())
        rows = (self._token_vectors(out) if output == T.TOKEN_EMBEDDINGS else out.logits).float().cpu().numpy()
        if not self.spec.task_row.per_token_output(output):
            return list(rows)
        return unpad_rows(rows, [len(s) for s in ids], side)

    def _token_vectors(self, out: object) -> torch.Tensor:
        """Hidden states; a multi-vector model's through its Dense modules, token by token."""
        hidden = out.last_hidden_state
        return self.dense(hidden.float()) if self.spec.task_row.multi_vector else hidden

    def _pooled(self, out: object, attention_mask: torch.Tensor) -> torch.Tensor:
        """The head after the encoder: SpladePooling over the logits, or pooling and the Dense modules."""
        if heads.is_sparse(self.spec.head):
            splade = self.spec.head[0]
            return splade_pool_padded(out.logits, attention_mask, splade["strategy"], splade["activation"])
        return self.dense(pool_padded(out.last_hidden_state, attention_mask, self.spec.pooling or "mean"))


def load(spec: ModelSpec, files: Path) -> TorchEngine:
    """The engine step of a torch build: the checkpoint the build copied beside it."""
    return TorchEngine.load(files / "checkpoint", spec)
