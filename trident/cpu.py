"""What this CPU can do fast: its instruction-set flags, read once, and the kind they make it.

The flags come from /proc/cpuinfo, or from TRIDENT_CPU_FLAGS (space- or comma-separated) so tests and
operators can say which CPU to plan for. Only the flags that change which engine variant is fast or
available (`RELEVANT_FLAGS`) are recorded in a build's manifest and compared at serve time.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS_ENV = "TRIDENT_CPU_FLAGS"
CPUINFO = Path("/proc/cpuinfo")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products: OpenVINO's bf16 path
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # u8 x s8 dot products without saturation
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                  "amx_tile", "amx_bf16", "amx_int8")


def cpu_flags() -> frozenset[str]:
    """Every flag of the first CPU (TRIDENT_CPU_FLAGS wins); empty where neither says."""
    override = os.environ.get(FLAGS_ENV)
    if override is not None:
        return frozenset(override.replace(",", " ").split())
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def relevant_flags(flags: frozenset[str] | None = None) -> list[str]:
    """The flags that decide the engine variant, sorted: what a manifest records and serve compares."""
    flags = cpu_flags() if flags is None else flags
    return sorted(flag for flag in RELEVANT_FLAGS if flag in flags)


def has_any(flags: frozenset[str], wanted: tuple[str, ...]) -> bool:
    return any(flag in flags for flag in wanted)


def cpu_kind(flags: frozenset[str] | None = None) -> str:
    """One word for the CPU's fastest reduced-precision path: amx, avx512_bf16, avx512_vnni, avx512, avx2, or
    baseline."""
    flags = cpu_flags() if flags is None else flags
    for kind, needs in (("amx", ("amx_bf16", "amx_int8")), ("avx512_bf16", ("avx512_bf16",)),
                        ("avx512_vnni", ("avx512_vnni",)), ("avx512", ("avx512f",)), ("avx2", ("avx2",))):
        if has_any(flags, needs):
            return kind
    return "baseline"


def cpu_name() -> str:
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
