"""What `/embed_hybrid` costs against `/embed` alone on the same inputs.

A random XLM-RoBERTa in BGE-M3's published layout (testkit.published.make_bge_m3's files), MiniLM-sized by
default (hidden 384, 6 layers: the engine dominates as it does for a real model, at a size this CPU runs),
served by a real `trident serve`. Requests of `--batch` inputs of about `--words` words each, sent one at a
time, the routes interleaved round by round so that load from other processes falls on all of them alike:
`/embed`, `/embed_hybrid` with its defaults (dense + sparse) and with all three outputs. Prints the median and
p90 latency of each, its ratio to `/embed`, and the machine (cores, CPU flags, load average) as JSON.

    .venv/bin/python bench/hybrid_cost.py [--rounds 30] [--batch 8] [--words 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.factories import _write_sentence_transformers, make_tiny_model  # noqa: E402
from testkit.stack import Stack  # noqa: E402

ROUTES = {
    "/embed": ("/embed", {}),
    "/embed_hybrid dense+sparse": ("/embed_hybrid", {}),
    "/embed_hybrid dense+sparse+colbert": ("/embed_hybrid", {"return_colbert": True}),
}
WORDS = "the quick brown fox jumps over a lazy dog near paris while john and mary read the paper".split()


def make_model(root: Path, hidden: int, layers: int) -> Path:
    """BGE-M3's layout at a chosen size: XLM-RoBERTa, CLS + Normalize, colbert_linear.pt and sparse_linear.pt."""
    import torch
    from torch import nn
    from transformers import AutoModel, XLMRobertaConfig

    folder = make_tiny_model(root / "m3", "xlm-roberta", max_seq_length=256)
    config = XLMRobertaConfig.from_pretrained(folder)
    config.update({"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": hidden // 64,
                   "intermediate_size": 4 * hidden, "initializer_range": 0.02})
    torch.manual_seed(0)
    AutoModel.from_config(config).eval().save_pretrained(folder)
    _write_sentence_transformers(folder, dim=hidden, pooling="cls", normalize=True, max_seq_length=256)
    torch.save(nn.Linear(hidden, hidden).state_dict(), folder / "colbert_linear.pt")
    torch.save(nn.Linear(hidden, 1).state_dict(), folder / "sparse_linear.pt")
    return folder


def texts(batch: int, words: int) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(WORDS, size=words)) for _ in range(batch)]


def machine() -> dict:
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return {"nproc": os.cpu_count(), "cpu_flags": [f for f in wanted if f in flags],
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("TRIDENT_PRECISION", "onnxruntime-fp32")
    with tempfile.TemporaryDirectory() as work:
        model = make_model(Path(work), args.hidden, args.layers)
        stack = Stack(["--model", f"m3={model}"], Path(work) / "serve.log",
                      env={"TRIDENT_HOME": str(Path(work) / "home")}).start(timeout=900)
        try:
            inputs = texts(args.batch, args.words)
            seconds: dict[str, list[float]] = {name: [] for name in ROUTES}
            load_before = os.getloadavg()
            with httpx.Client(base_url=stack.base_url, timeout=120) as client:
                for round_ in range(args.rounds + 2):  # two warm-up rounds
                    for name, (path, extra) in ROUTES.items():
                        started = time.perf_counter()
                        response = client.post(path, json={"inputs": inputs, "model": "m3", "truncate": True,
                                                           **extra})
                        elapsed = time.perf_counter() - started
                        assert response.status_code == 200, response.text
                        if round_ >= 2:
                            seconds[name].append(elapsed)
                tokens = client.post("/v1/embeddings", json={"input": inputs, "model": "m3"}).json()["usage"]
        finally:
            stack.stop()
    base = float(np.median(seconds["/embed"]))
    report = {name: {"median_ms": round(1000 * float(np.median(v)), 2),
                     "p90_ms": round(1000 * float(np.percentile(v, 90)), 2),
                     "vs_embed": round(float(np.median(v)) / base, 3)} for name, v in seconds.items()}
    print(json.dumps({"model": f"random XLM-RoBERTa hidden {args.hidden}, {args.layers} layers, BGE-M3 layout",
                      "request": f"{args.batch} inputs, {tokens['prompt_tokens']} tokens", "rounds": args.rounds,
                      "routes": report, "machine": {**machine(), "load_average_before": load_before}}, indent=2))


if __name__ == "__main__":
    main()
