"""The compose GPU stack serves every engine: what the `triton` and `builder` images install, read offline
from the Dockerfile and compose.yaml (no Docker engine here; tests/unit/test_deploy.py checks the files'
schemas and wiring)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cli.main import parser

ROOT = Path(__file__).resolve().parent.parent.parent
# The TensorRT of each NGC Triton image: a plan loads only in the TensorRT version that built it.
TENSORRT_OF_TRITON = {"24.10": "10.5.0"}


def stage(name: str) -> str:
    text = (ROOT / "Dockerfile").read_text()
    return re.split(r"^FROM ", text.split(f" AS {name}\n", 1)[1], flags=re.MULTILINE)[0]


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line)


def test_the_triton_image_runs_the_torch_engine():
    triton = stage("triton")
    assert f"torch=={pins()['torch']}" in triton
    assert "download.pytorch.org/whl/cpu" not in triton  # the CUDA build, not the CPU one of the cpu image
    install = next(line for line in triton.splitlines() if "-c constraints.txt ." in line)
    assert "transformers" in install and "safetensors" in install  # versions from constraints.txt
    assert "import torch, transformers, trident.engines.torch.engine" in triton


def test_the_builder_builds_torch_and_tensorrt_engines_for_that_triton():
    text = (ROOT / "Dockerfile").read_text()
    tag = re.search(r"^ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:(\d+\.\d+)-py3$", text, re.MULTILINE).group(1)
    builder = stage("builder")
    assert re.search(r"^FROM triton AS builder$", text, re.MULTILINE)  # CUDA torch comes from the triton stage
    assert '".[build]"' in builder
    version = TENSORRT_OF_TRITON[tag]
    for package in ("tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu12-bindings"):
        assert f"{package}=={version}" in builder, package
    assert "import tensorrt, torch" in builder


def test_compose_builds_the_engine_asked_for():
    builder = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["builder"]
    command = builder["command"]
    engine = command[command.index("--engine") + 1]
    variable, default = re.fullmatch(r"\$\{(\w+):-(\w+)\}", engine).groups()
    assert variable == "TRIDENT_ENGINE" and default == "tensorrt"
    build = next(a for a in parser()._subparsers._group_actions[0].choices["build"]._actions if a.dest == "engine")
    assert {"torch", "tensorrt"} <= set(build.choices) and default in build.choices
