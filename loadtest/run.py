"""`make loadtest`: start the stack, run Locust headless for a bounded time, write CSV + HTML, stop."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.stack import Stack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--spawn-rate", type=float, default=4)
    parser.add_argument("--run-time", default="60s")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "reports")
    args = parser.parse_args()

    from trident.cli import _build_options
    from trident.cli import parser as cli_parser
    from trident.models import DEFAULT_MODEL_NAME, default_model_dir
    from trident.serve import ModelArg, prepare_model

    options = _build_options(cli_parser().parse_args(["serve"]))  # `make serve`'s build, reused
    repository = prepare_model(ModelArg(str(default_model_dir()), DEFAULT_MODEL_NAME), options, progress=print)
    args.out.mkdir(parents=True, exist_ok=True)
    stack = Stack(["--repository", str(repository)], args.out / "trident.log").start()
    try:
        command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"), "--headless",
                   "--host", stack.base_url, "-u", str(args.users), "-r", str(args.spawn_rate),
                   "--run-time", args.run_time, "--stop-timeout", "10",
                   "--csv", str(args.out / "trident"), "--html", str(args.out / "trident.html")]
        return subprocess.run(command, timeout=3600).returncode
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
