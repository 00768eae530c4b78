"""`make loadtest`: start the stack, run Locust headless for a bounded time, write CSV + HTML, stop.

The stack serves all-MiniLM-L6-v2 for embeddings plus a reranker and a 3-label classifier of the same
size: MiniLM's encoder with a fresh (seeded, untrained) classification head, the shape of
cross-encoder/ms-marco-MiniLM-L-6-v2. No trained one can be fetched here; the load is the same, the
scores mean nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.stack import Stack  # noqa: E402

SCORING_MODELS = {"minilm-reranker": 1, "minilm-classifier": 3}  # name -> labels


def scoring_checkpoint(model_dir: Path, out: Path, num_labels: int) -> Path:
    """MiniLM's encoder with a seeded new sequence-classification head, saved once under `out`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    labels = {0: "score"} if num_labels == 1 else {i: f"label_{i}" for i in range(num_labels)}
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=num_labels, id2label=labels)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=4)
    parser.add_argument("--run-time", default="60s")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "reports")
    args = parser.parse_args()

    from cli.main import _build_options
    from cli.main import parser as cli_parser
    from cli.models import DEFAULT_MODEL_NAME, default_model_dir
    from cli.serve import ModelArg, prepare_model

    options = _build_options(cli_parser().parse_args(["serve"]))  # `make serve`'s build, reused
    model_dir = default_model_dir()
    repositories = [prepare_model(ModelArg(str(model_dir), DEFAULT_MODEL_NAME), options, progress=print)]
    for name, labels in SCORING_MODELS.items():
        checkpoint = scoring_checkpoint(model_dir, ROOT / ".trident" / "loadtest" / name, labels)
        repositories.append(prepare_model(ModelArg(str(checkpoint), name), options, progress=print))
    args.out.mkdir(parents=True, exist_ok=True)
    served = [arg for repository in repositories for arg in ("--repository", str(repository))]
    stack = Stack([*served, "--default-model", DEFAULT_MODEL_NAME], args.out / "trident.log").start()
    env = {**os.environ, "TRIDENT_MODEL": DEFAULT_MODEL_NAME, "TRIDENT_RERANK_MODEL": "minilm-reranker",
           "TRIDENT_PREDICT_MODEL": "minilm-classifier"}
    try:
        command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
                   "--host", stack.base_url, "-u", str(args.users), "-r", str(args.spawn_rate),
                   "--run-time", args.run_time, "--stop-timeout", "10",
                   "--csv", str(args.out / "trident"), "--html", str(args.out / "trident.html")]
        return subprocess.run(command, timeout=3600, env=env).returncode
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
