"""`--gpus all|0,1,..`: the GPUs of this host the engine's instances go on (`builder.repository.on_gpus`).

Indexes are CUDA's, as Triton counts them: the GPUs this process sees (after CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path


def visible_gpus() -> int:
    """How many GPUs this process sees: CUDA_VISIBLE_DEVICES when set, else what the NVIDIA driver lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([device for device in visible.split(",") if device.strip() not in ("", "-1")])
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
            return sum(1 for line in listed.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    driver = Path("/proc/driver/nvidia/gpus")
    return len(list(driver.iterdir())) if driver.is_dir() else 0


def gpu_list(text: str, visible: int | None = None) -> list[int]:
    """`all` -> every visible GPU; `0,2` -> those (each one this host has). argparse's `type`."""
    count = visible_gpus() if visible is None else visible
    if text.strip().lower() == "all":
        if count == 0:
            raise argparse.ArgumentTypeError("--gpus all: this host shows no GPU (no CUDA_VISIBLE_DEVICES, "
                                             "nvidia-smi or /proc/driver/nvidia)")
        return list(range(count))
    try:
        gpus = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus takes `all` or GPU indexes like 0,1; got {text!r}") from None
    if any(gpu < 0 for gpu in gpus) or len(set(gpus)) != len(gpus):
        raise argparse.ArgumentTypeError(f"--gpus: indexes must be distinct and >= 0, got {text!r}")
    if count and max(gpus) >= count:
        raise argparse.ArgumentTypeError(f"--gpus {text}: this host shows {count} GPU(s), indexes 0 to {count - 1}")
    return gpus
