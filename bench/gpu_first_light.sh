#!/usr/bin/env bash
# First light on a GPU: one command on a bare GPU machine (Python 3.12 with PyTorch, no network, no Triton).
#
#   here, once (PyPI reachable):  .venv/bin/python bench/first_light.py pack   -> .trident/first-light/ (< 64 MiB)
#   there, from the repository root, with that folder carried along:
#                                 bash bench/gpu_first_light.sh                -> $OUT/first_light.json + 7 logs
#   here, the same steps on the CPU at toy sizes (figures labelled as CPU toy figures):
#                                 bash bench/gpu_first_light.sh --dry-run
#
# Everything is in bench/first_light.py (`run`): install from the pack, build all-MiniLM-L6-v2 and a
# BERT-base-sized random model with --engine torch, serve them through Triton + the gateway, check them
# against sentence-transformers, the two HTTP workloads, bench/gpu.py. Each phase has a hard time limit and
# the JSON is rewritten after every phase; the run ends by 470 s, and this wrapper stops it at 525 s whatever
# happens (the JSON written so far stays). Extra arguments go to `first_light.py run`.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
limit=${FIRST_LIGHT_TIMEOUT_S:-525}
python=${PYTHON:-python3}
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then
    limit=${FIRST_LIGHT_TIMEOUT_S:-1800}
    python=${PYTHON:-.venv/bin/python}
  fi
done
exec timeout --signal=TERM --kill-after=20 "$limit" "$python" bench/first_light.py run "$@"
