"""The PyTorch engine (`--engine torch`): the engine contract (`trident.engines.contract.Engine`) on CUDA.

- `packing`: unpadded sequences -> token-budget batches (packed with cu_seqlens, or padded per length bucket)
- `attention`: variable-length attention registered with transformers (flash kernel on CUDA, SDPA per
  sequence as the CPU reference)
- `fp8`: FP8 (e4m3) weights with per-channel scales, dynamic per-token activation scales, `torch._scaled_mm`
- `engine`: TorchEngine, which puts them together with the head (`trident.head_layers`)
"""
