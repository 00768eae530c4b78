#!/usr/bin/env python3
"""First light on a GPU: the torch engine served through the real Triton and the gateway, measured in one run.

    .venv/bin/python bench/first_light.py pack           # here, with PyPI: .trident/first-light/ (< 64 MiB)
    bash bench/gpu_first_light.sh                        # there: a bare H100/H200, no network, < 8 minutes
    .venv/bin/python bench/first_light.py run --dry-run  # here: the same steps on the CPU at toy sizes

`pack` assembles the one folder the GPU machine needs (it has Python 3.12 with PyTorch, transformers and
numpy 2, no network, no tritonserver): the wheels Trident's serving path needs that the machine lacks, a
trimmed nvidia-pytriton (the tritonserver binary, its libraries, the Python backend and one stub), numpy
1.26 for the stubs' own environment (the 24.10 stub dies on BYTES tensors with numpy 2), the
all-MiniLM-L6-v2 copy of `bench/gpu.py --prepare-minilm` and Trident's source (`git archive HEAD`), in one
xz stream, with a manifest that says what is inside and what was left out.

`run` (what gpu_first_light.sh starts; stdlib only until the wheels are in) installs from the folder,
builds all-MiniLM-L6-v2 and a BERT-base-sized random model with `--engine torch`, serves both through
`trident serve --repository` (real Triton, real gateway), checks the served vectors against
sentence-transformers on the same device (cosine >= 0.999), runs the two HTTP workloads on the
BERT-base-sized model, stops the stack, runs `bench/gpu.py`, and writes `first_light.json` plus logs
(8 files at most: what the device tool brings back) under --out. Every phase has a hard time limit and
the JSON is rewritten after each one, so a run that breaks or runs out of time still says how far it got.
`--dry-run` makes a pack for this Python, a stand-in for the GPU machine (a venv holding only the packages
that machine has, numpy 2 among them) and runs the same phases with toy sizes on the CPU: its figures are
CPU toy figures, labelled so, never GPU measurements.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import traceback
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACK_DIR = ROOT / ".trident" / "first-light"
CACHE_DIR = ROOT / ".trident" / "first-light-cache"
DRY_DIR = ROOT / ".trident" / "first-light-dry"
MINILM_COPY = ROOT / ".trident" / "bench" / "minilm-fp16"  # what bench/gpu.py --prepare-minilm writes
LIMIT_BYTES = 64 * 2**20  # what travels to the device machine in one call: working tree + carried paths
# Two xz streams: the wheels (stored zips, so their ELF code meets xz's x86 filter) and the data.
PAYLOAD = {"binaries.tar.xz": ("wheels", "stub-wheels"), "data.tar.xz": ("minilm", "source.tar")}
MANIFEST = "manifest.json"
TARGET_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64")

# The Python packages of the GPU machine's image ('cuda', read 2026-11-17; /work/.library/device/KINDS.md).
# The dry run's stand-in machine holds exactly these (from .venv), with numpy 2 in place of .venv's 1.26.
DEVICE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
""".split())

# What the gateway, the repository writer and the Triton launcher import beyond the machine's packages (the
# closure of pyproject's serving dependencies minus DEVICE_PACKAGES; tests/unit/test_first_light.py keeps it so),
# plus three it has at versions unknown to us that these pins need: grpcio >= 1.81.1 and protobuf >= 6.33.5
# (tritonclient 2.73's generated code checks both at import), typing_extensions >= 4.16 (pydantic 2.14).
# Versions: constraints.txt. onnxruntime (CPU engine) and tokenizers are the machine's own.
OVERLAY = ("fastapi", "starlette", "opentelemetry-api", "uvicorn", "httptools", "orjson", "pydantic", "pydantic-core",
           "annotated-types", "typing-inspection", "typing-extensions", "tritonclient", "python-rapidjson",
           "protobuf", "grpcio", "nvidia-pytriton")
STUB_ONLY = ("numpy",)  # numpy 1.26.4 (constraints.txt), installed into the stubs' environment only
# nvidia-pytriton: kept, relative to the wheel's root; the libraries these need are found by DT_NEEDED.
PYTRITON_KEEP = ("pytriton/tritonserver/bin/tritonserver",
                 "pytriton/tritonserver/backends/python/libtriton_python.so",
                 "pytriton/tritonserver/backends/python/triton_python_backend_utils.py",
                 "pytriton/tritonserver/caches/local/libtritoncache_local.so")
PYTRITON_STRIP = ("tritonserver", "libtritonserver", "libtriton_python.so")  # symbols only; the stubs are kept whole
# libxml2 (needed by libtritonserver) needs ICU, whose 29 MB data library only converts character encodings
# for XML that a local model repository never reads: a placeholder with the one symbol libicuuc links.
ICU_DATA = re.compile(r"libicudata-[0-9a-f]+\.so\.(\d+)(\.\d+)*")
PYTRITON_VERSION_LABEL = "+trident.trimmed"
TRIMMED_INIT = '''"""nvidia-pytriton, trimmed by Trident's bench/first_light.py: only the tritonserver binary, its
libraries, the Python backend and one stub are here (see TRIMMED.json); pytriton's Python API is not."""
__version__ = "{version}"
'''


# --- small helpers -------------------------------------------------------------------------------------------


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(constraints: Path = ROOT / "constraints.txt") -> dict[str, str]:
    out = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[normalize(name)] = version.strip()
    return out


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return normalize(name), version


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def elf_needed(data: bytes) -> list[str]:
    """DT_NEEDED entries of a little-endian ELF64 file ([] for anything else)."""
    import struct

    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 1:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == 2:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return []
    entries, strtab = [], None
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == 1:
            entries.append(value)
        elif tag == 5:
            strtab = value
    if strtab is None:
        return []
    base = next((offset + strtab - vaddr for vaddr, offset, size in loads if vaddr <= strtab < vaddr + size), None)
    if base is None:
        return []
    return [data[base + e : data.index(b"\0", base + e)].decode() for e in entries]


def record_line(name: str, data: bytes) -> str:
    import base64

    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(dst: Path, files: Iterable[tuple[zipfile.ZipInfo, bytes]], dist_info: str) -> None:
    """A wheel stored uncompressed (the xz stream around it compresses better than deflate), RECORD rewritten."""
    files = [(info, data) for info, data in files if not info.filename.endswith("/RECORD")]
    lines = [record_line(info.filename, data) for info, data in files] + [f"{dist_info}/RECORD,,"]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for info, data in files:
            copy = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            copy.external_attr, copy.compress_type = info.external_attr, zipfile.ZIP_STORED
            out.writestr(copy, data)
        record = zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(1980, 1, 1, 0, 0, 0))
        record.external_attr = 0o644 << 16
        out.writestr(record, "\n".join(lines) + "\n")


def read_wheel(path: Path) -> tuple[list[tuple[zipfile.ZipInfo, bytes]], str]:
    with zipfile.ZipFile(path) as z:
        files = [(info, z.read(info)) for info in z.infolist() if not info.is_dir()]
    dist_info = next(info.filename.split("/")[0] for info, _ in files if info.filename.split("/")[0].endswith(
        ".dist-info"))
    return files, dist_info


# --- pack ----------------------------------------------------------------------------------------------------


def download(names: Iterable[str], versions: dict[str, str], python_version: str, dest: Path, log: Callable) -> None:
    """cp<python_version> manylinux wheels from the package index, no dependencies (the set is ours)."""
    dest.mkdir(parents=True, exist_ok=True)
    want = [f"{n}=={versions[n]}" for n in names if not any(
        wheel_name(w) == (n, versions[n]) for w in dest.glob("*.whl"))]
    if not want:
        return
    log(f"downloading {len(want)} wheels for Python {python_version}: {' '.join(want)}")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "--dest", str(dest),
               *(a for p in PLATFORMS for a in ("--platform", p)), *want]
    subprocess.run(command, check=True, env={**os.environ, "PIP_CONSTRAINT": "", "PIP_CONFIG_FILE": os.devnull})


def find_wheel(wheels: Path, name: str, version: str | None) -> Path:
    found = [w for w in sorted(wheels.glob("*.whl")) if wheel_name(w)[0] == name
             and (version is None or wheel_name(w)[1] == version)]
    if not found:
        raise SystemExit(f"no wheel of {name}{'==' + version if version else ''} in {wheels}")
    return found[-1]


def restore_stored(src: Path, dst: Path) -> None:
    files, _ = read_wheel(src)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:  # RECORD still matches: same file contents
        for info, data in files:
            copy = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            copy.external_attr = info.external_attr
            out.writestr(copy, data)


def trim_numpy(src: Path, dst: Path) -> dict[str, Any]:
    """numpy without its test suites (6 MB): the stubs import numpy, they never test it."""
    files, dist_info = read_wheel(src)
    kept = [(i, d) for i, d in files if "/tests/" not in i.filename]
    write_wheel(dst, kept, dist_info)
    left_out = sum(len(d) for _, d in files) - sum(len(d) for _, d in kept)
    return {"left_out": "numpy/**/tests/", "bytes_left_out": left_out}


def strip_symbols(data: bytes, name: str, log: Callable) -> bytes:
    strip = shutil.which("strip")
    if not strip or not data.startswith(b"\x7fELF"):
        return data
    with contextlib.ExitStack() as stack:
        import tempfile

        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        (folder / "in").write_bytes(data)
        result = subprocess.run([strip, "--strip-unneeded", "-o", str(folder / "out"), str(folder / "in")],
                                capture_output=True, text=True)
        if result.returncode != 0:
            log(f"strip failed on {name}, kept as is: {result.stderr.strip()}")
            return data
        return (folder / "out").read_bytes()


def icu_placeholder(soname: str, version: str, log: Callable) -> bytes | None:
    """A shared library named `soname` that defines `icudt<version>_dat` (16 zero bytes), or None without gcc."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        log("no C compiler here: libicudata is kept whole")
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "icudata.c", Path(tmp) / soname
        source.write_text(f"const unsigned char icudt{version}_dat[16] __attribute__((aligned(16))) = {{0}};\n")
        subprocess.run([gcc, "-shared", "-fPIC", "-nostdlib", "-O2", f"-Wl,-soname,{soname}", "-o", str(out),
                        str(source)], check=True)
        return out.read_bytes()


def trim_pytriton(src: Path, dst_dir: Path, python_version: str, log: Callable) -> dict[str, Any]:
    """nvidia-pytriton with only what `cli/triton_server.py` launches: the binary, the libraries it and the
    Python backend need, the backend and the stub for `python_version`. Returns what was kept and left out."""
    files, dist_info = read_wheel(src)
    by_name = {info.filename: (info, data) for info, data in files}
    keep = [*PYTRITON_KEEP, f"pytriton/tritonserver/python_backend_stubs/{python_version}/triton_python_backend_stub"]
    missing = [k for k in keep if k not in by_name]
    if missing:
        raise SystemExit(f"{src.name} lacks {missing}: not the nvidia-pytriton layout this packer knows")
    libs = {name.split("/", 1)[1]: name for name in by_name if name.startswith("nvidia_pytriton.libs/")}
    todo, kept = list(keep), set(keep)
    while todo:
        for needed in elf_needed(by_name[todo.pop()][1]):
            if needed in libs and libs[needed] not in kept:
                kept.add(libs[needed])
                todo.append(libs[needed])
    version = dist_info.removesuffix(".dist-info").split("-", 1)[1]
    new_version = version + PYTRITON_VERSION_LABEL
    new_dist_info = dist_info.replace(version, new_version)
    out: list[tuple[zipfile.ZipInfo, bytes]] = []
    changed: dict[str, str] = {}
    for name in sorted(kept):
        info, data = by_name[name]
        base = name.rsplit("/", 1)[1]
        icu = ICU_DATA.fullmatch(base)
        if icu:
            placeholder = icu_placeholder(base, icu.group(1), log)
            if placeholder is not None:
                changed[name] = (f"placeholder ({len(data):,} -> {len(placeholder):,} bytes): only "
                                 f"icudt{icu.group(1)}_dat")
                data = placeholder
        elif base.startswith(PYTRITON_STRIP):
            stripped = strip_symbols(data, name, log)
            if len(stripped) < len(data):
                changed[name] = f"symbols stripped ({len(data):,} -> {len(stripped):,} bytes)"
                data = stripped
        out.append((info, data))
    init = zipfile.ZipInfo("pytriton/__init__.py")
    init.external_attr = 0o644 << 16
    out.append((init, TRIMMED_INIT.format(version=version).encode()))
    left_out = sorted(n for n in by_name if n not in kept and not n.startswith(dist_info + "/"))
    groups: dict[str, int] = {}
    for name in left_out:
        key = ("other Python versions' stubs" if "/python_backend_stubs/" in name else
               "libraries nothing kept links (libpython3.13 of the 3.13 stub, ...)" if name.startswith(
                   "nvidia_pytriton.libs/") else "pytriton's Python API (client, models, proxy, server, ...)")
        groups[key] = groups.get(key, 0) + len(by_name[name][1])
    report = {"source": src.name, "kept_files": len(kept), "kept_bytes": sum(len(d) for _, d in out),
              "changed": changed, "left_out_bytes": groups, "left_out_files": len(left_out)}
    trimmed = zipfile.ZipInfo("pytriton/TRIMMED.json")
    trimmed.external_attr = 0o644 << 16
    out.append((trimmed, json.dumps({**report, "left_out": left_out}, indent=1).encode()))
    for name, (info, data) in by_name.items():
        if name.startswith(dist_info + "/") and not name.endswith("/RECORD"):
            info = zipfile.ZipInfo(new_dist_info + name[len(dist_info):])
            info.external_attr = 0o644 << 16
            if name.endswith("/METADATA"):  # no Requires-Dist: what is left needs none of them
                text = data.decode()
                text = re.sub(r"^Version: .*$", f"Version: {new_version}", text, count=1, flags=re.MULTILINE)
                data = "\n".join(line for line in text.splitlines() if not line.startswith(
                    "Requires-Dist:")).encode() + b"\n"
            out.append((info, data))
    dst = dst_dir / src.name.replace(f"-{version}-", f"-{new_version}-")
    write_wheel(dst, out, new_dist_info)
    return report


PLANES_SUFFIX = ".planes"


def to_planes(data: bytes) -> bytes:
    """safetensors -> header, then every even byte, then every odd byte of the tensor data: the high bytes of
    16-bit floats (sign, exponent) compress far better apart. A byte permutation: `from_planes` undoes it."""
    head = 8 + int.from_bytes(data[:8], "little")
    body = data[head:]
    return data[:head] + body[0::2] + body[1::2]


def from_planes(data: bytes) -> bytes:
    head = 8 + int.from_bytes(data[:8], "little")
    body = data[head:]
    half = (len(body) + 1) // 2
    out = bytearray(len(body))
    out[0::2], out[1::2] = body[:half], body[half:]
    return data[:head] + bytes(out)


def bf16_precision(path: Path) -> dict[str, Any]:
    """Round the fp16 weights of a safetensors file to bfloat16's 8 significant bits, in place (still fp16):
    the low bytes then compress, and the copy fits the 64 MiB that travels. Engine and reference both load
    this same copy on the device; bf16 is the precision FP8 is compared against there anyway."""
    import numpy as np

    data = bytearray(path.read_bytes())
    head = 8 + int.from_bytes(data[:8], "little")
    header = json.loads(data[8:head])
    rounded = 0
    for name, entry in header.items():
        if name == "__metadata__" or entry["dtype"] != "F16":
            continue
        start, end = (head + o for o in entry["data_offsets"])
        half = np.frombuffer(bytes(data[start:end]), dtype=np.float16)
        as32 = half.astype(np.float32).view(np.uint32)
        # round to nearest even at bit 16 of the float32 pattern (bf16), then back to fp16
        bias = ((as32 >> 16) & 1) + 0x7FFF
        bf16 = ((as32 + bias) & 0xFFFF0000).view(np.float32)
        data[start:end] = bf16.astype(np.float16).tobytes()
        rounded += half.size
    path.write_bytes(bytes(data))
    return {"weights_rounded": rounded}


def tree_bytes(root: Path = ROOT) -> int:
    """What the device tool sends besides carried paths: tracked files and untracked ones git does not ignore."""
    try:
        command = ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
        listed = subprocess.run(command, capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return 0
    total = 0
    for name in filter(None, listed):
        with contextlib.suppress(OSError):
            total += (root / os.fsdecode(name)).lstat().st_size
    return total


def git_source(dest: Path) -> dict[str, Any]:
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    with dest.open("wb") as f:
        subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "HEAD"], stdout=f, check=True)
    return {"commit": commit, "tracked_changes_not_in_it": bool(dirty), "bytes": dest.stat().st_size}


def add_to_tar(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    """Deterministic members: sorted, no owners, mtime 0."""
    for item in sorted([path, *path.rglob("*")]) if path.is_dir() else [path]:
        info = tar.gettarinfo(str(item), arcname=arcname + str(item)[len(str(path)):])
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        if info.isfile():
            with item.open("rb") as f:
                tar.addfile(info, f)
        else:
            tar.addfile(info)


def pack(args: argparse.Namespace, log: Callable = print) -> dict[str, Any]:
    """Assemble args.out: payload.tar.xz + manifest.json. Exits non-zero if it would not fit in the limit."""
    started = time.monotonic()
    out: Path = args.out
    versions = pins()
    python_version = args.python_version
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    for stale in [out / MANIFEST, *out.glob("*.tar.xz")]:
        stale.unlink(missing_ok=True)
    (staging / "wheels").mkdir(parents=True)
    (staging / "stub-wheels").mkdir()
    if args.wheels:
        source = Path(args.wheels)
    else:
        source = CACHE_DIR / f"cp{python_version.replace('.', '')}"
        download([*OVERLAY, *STUB_ONLY], versions, python_version, source, log)
    wheels: list[dict[str, Any]] = []
    for name in OVERLAY:
        src = find_wheel(source, name, versions.get(name))
        entry: dict[str, Any] = {"name": name, "version": wheel_name(src)[1], "from": src.name,
                                 "wheel_bytes": src.stat().st_size}
        if name == "nvidia-pytriton":
            entry["trimmed"] = trim_pytriton(src, staging / "wheels", python_version, log)
        else:
            restore_stored(src, staging / "wheels" / src.name)
        wheels.append(entry)
    numpy = find_wheel(source, "numpy", versions.get("numpy"))
    stub = {"name": "numpy", "version": wheel_name(numpy)[1], "from": numpy.name, "wheel_bytes": numpy.stat().st_size,
            **trim_numpy(numpy, staging / "stub-wheels" / numpy.name)}
    minilm_src = Path(args.minilm) if args.minilm else MINILM_COPY
    if not (minilm_src / "model.safetensors").is_file():
        if args.minilm:
            raise SystemExit(f"{minilm_src} has no model.safetensors")
        log("preparing the all-MiniLM-L6-v2 copy (bench/gpu.py --prepare-minilm)")
        subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--prepare-minilm"], check=True)
    minilm = staging / "minilm"
    shutil.copytree(minilm_src, minilm, ignore=shutil.ignore_patterns("data_config.json", ".*"))
    weights = minilm / "model.safetensors"
    minilm_report = {"from": str(minilm_src), **(bf16_precision(weights) if args.bf16_minilm else {})}
    (minilm / ("model.safetensors" + PLANES_SUFFIX)).write_bytes(to_planes(weights.read_bytes()))
    weights.unlink()
    source_report = git_source(staging / "source.tar")
    log(f"compressing the payload (xz preset {args.preset}{' extreme' if args.extreme else ''})")
    preset = args.preset | (lzma.PRESET_EXTREME if args.extreme else 0)

    def compress(name: str) -> dict[str, Any]:
        parts = PAYLOAD[name]
        filters = [*([{"id": lzma.FILTER_X86}] if name.startswith("binaries") else []),
                   {"id": lzma.FILTER_LZMA2, "preset": preset}]
        target = out / name
        with lzma.open(target.with_suffix(".tmp"), "wb", format=lzma.FORMAT_XZ, filters=filters) as xz, \
                tarfile.open(fileobj=xz, mode="w") as tar:
            for part in parts:
                add_to_tar(tar, staging / part, part)
        target.with_suffix(".tmp").replace(target)
        raw = sum(p.stat().st_size for part in parts for p in [staging / part, *(staging / part).rglob("*")]
                  if p.is_file())
        return {"bytes": target.stat().st_size, "raw_bytes": raw, "sha256": sha256(target)}

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(PAYLOAD)) as pool:  # lzma lets go of the GIL: one core per stream
        payload = dict(zip(PAYLOAD, pool.map(compress, PAYLOAD), strict=True))
    shutil.rmtree(staging)
    manifest = {
        "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "python": python_version,
        "platforms": list(PLATFORMS), "source": source_report, "overlay_wheels": wheels, "stub_wheels": [stub],
        "minilm": minilm_report, "payload": payload,
        "left_out": left_out_summary(wheels, stub, args.bf16_minilm),
        "seconds": round(time.monotonic() - started, 1),
    }
    limit = getattr(args, "limit_bytes", None) or int(args.limit_mib * 2**20)
    manifest["size"] = size_account(sum(p["bytes"] for p in payload.values()), limit)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    size = manifest["size"]
    log(f"pack: {out} {size['carried_bytes'] / 2**20:.1f} MiB carried + {size['tree_bytes'] / 2**20:.1f} MiB "
        f"working tree = {size['total_bytes'] / 2**20:.1f} MiB of {size['limit_bytes'] / 2**20:.0f} MiB")
    if not size["fits"] and args.enforce_limit:
        raise SystemExit(f"the pack does not fit: {size['total_bytes']:,} bytes > {size['limit_bytes']:,}")
    return manifest


def size_account(payload_bytes: int, limit_bytes: int = LIMIT_BYTES, manifest_bytes: int = 16 * 1024) -> dict:
    tree = tree_bytes()
    total = tree + payload_bytes + manifest_bytes
    return {"carried_bytes": payload_bytes + manifest_bytes, "tree_bytes": tree, "total_bytes": total,
            "limit_bytes": limit_bytes, "margin_bytes": limit_bytes - total, "fits": total <= limit_bytes}


def left_out_summary(wheels: list[dict[str, Any]], stub: dict[str, Any], bf16: bool) -> list[str]:
    notes = []
    for entry in wheels:
        trimmed = entry.get("trimmed")
        if trimmed:
            for what, count in trimmed["left_out_bytes"].items():
                notes.append(f"nvidia-pytriton: {what}, {count / 2**20:.1f} MiB")
            notes += [f"nvidia-pytriton: {name.rsplit('/', 1)[1]} {how}" for name, how in trimmed["changed"].items()]
    notes.append(f"numpy {stub['version']}: its test suites, {stub['bytes_left_out'] / 2**20:.1f} MiB")
    notes.append("all-MiniLM-L6-v2: data_config.json (training data list)"
                 + ("; weights rounded to bf16 precision (kept as fp16)" if bf16 else ""))
    notes.append("onnxruntime, tokenizers, torch, transformers, sentence-transformers, aiohttp, uvloop, "
                 "prometheus-client, pyyaml, safetensors: the GPU machine's own")
    return notes


# --- run: the phases -----------------------------------------------------------------------------------------

# Seconds each phase may take at most (GPU run). The stack's phases also stop early enough to leave
# GPU_BENCH_RESERVE_S for bench/gpu.py; the whole run ends by --deadline-s.
CAPS = {"setup": 75, "stub_env": 40, "checkpoints": 40, "build": 150, "serve": 120, "check": 150, "http": 100,
        "stop": 25}
GPU_BENCH_RESERVE_S = 200
TEXTS = [
    "A man is playing a guitar.", "Someone is playing an instrument.", "The stock market fell sharply today.",
    "hi", "Paris is the capital and largest city of France.", "東京は日本の首都です。",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Numbers 3.14159, 2024-01-01, $1,000,000 and e-mail someone@example.com",
    " ".join(["Transformers process text as sequences of subword tokens, and every model has a maximum "
              "sequence length beyond which the input must be truncated."] * 30),
]
TARGETS = {  # the targets, checked against what this run measured (None: not measured)
    "bf16_ratio_bert": (">=", 1.4), "bf16_ratio_8b": (">=", 1.4), "fp8_ratio_8b": (">=", 2.2),
    "short_seq_ratio": (">=", 2.0), "fp8_cosine_real": (">=", 0.99), "served_min_cosine": (">=", 0.999),
    "http_requests_per_s_5tok_c64": (">=", 1000.0), "http_p99_ms_5tok_c64": ("<=", 50.0),
    "http_tokens_vs_engine_500tok": (">=", 0.8),
}
SIZES = {  # the BERT-base-sized random model, and the HTTP workloads
    "gpu": {"bert": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                     "intermediate_size": 3072}, "http_s": 20.0, "long_concurrency": 8, "short_concurrency": 64},
    "toy": {"bert": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "intermediate_size": 128}, "http_s": 3.0, "long_concurrency": 8, "short_concurrency": 64},
}


# What builds, the reference and bench/gpu.py import under the machine's Python (setup fails without them).
MAIN_NEEDS = ("numpy", "torch", "transformers", "tokenizers", "safetensors", "google.protobuf", "tritonclient.grpc",
              "trident.stages")
# At most 8 files come back from the device machine: first_light.json and these logs.
LOGS = ("driver", "setup", "build", "serve", "triton", "workers", "gpu_bench")


class PhaseError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Runner:
    """The phases, each under a hard limit; the JSON is rewritten after every one."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.deadline = self.started + args.deadline_s
        self.out: Path = args.out
        self.work: Path = args.work
        self.out.mkdir(parents=True, exist_ok=True)
        self.sizes = SIZES["toy" if args.dry_run else "gpu"]
        self.state: dict[str, Any] = {}
        self.serve: subprocess.Popen | None = None
        self.children: set[subprocess.Popen] = set()  # killed if the run itself is stopped
        self.result: dict[str, Any] = {
            "what": "first light: Trident's torch engine through the real Triton and the gateway",
            "dry_run": bool(args.dry_run),
            "figures_are": ("CPU toy figures from --dry-run (tiny models, CPU torch, float32): NOT GPU measurements"
                            if args.dry_run else "measured in this run on the device named below"),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "phases": {}, "figures": {},
            **dict.fromkeys(("bf16_ratio_bert", "bf16_ratio_8b", "fp8_ratio_8b", "fp8_cosine_real", "short_seq_ratio",
                             "device")),
        }
        self.driver_log = (self.out / "driver.log").open("a")
        self.save()

    def log_file(self, name: str) -> Path:
        assert name in LOGS, name
        return self.out / f"{name}.log"

    def say(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f}s] {message}"
        print(line, flush=True)
        self.driver_log.write(line + "\n")
        self.driver_log.flush()

    def save(self) -> None:
        self.result["seconds"] = round(time.monotonic() - self.started, 1)
        tmp = self.out / "first_light.json.tmp"
        tmp.write_text(json.dumps(self.result, indent=1, default=str) + "\n")
        tmp.replace(self.out / "first_light.json")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def phase(self, name: str, fn: Callable[[float], Any], cap_s: float, reserve_s: float = 0.0,
              needs: Iterable[str] = ()) -> Any:
        failed = [n for n in needs if self.result["phases"].get(n, {}).get("status") != "ok"]
        cap_s *= 3 if self.args.dry_run else 1  # a 2-core CPU builds and serves slower than the GPU machine
        budget = min(cap_s, self.left() - reserve_s)
        record: dict[str, Any] = {"cap_s": round(budget, 1)}
        self.result["phases"][name] = record
        if failed:
            record.update(status="skipped", reason=f"needs {', '.join(failed)}")
        elif budget < 5:
            record.update(status="skipped", reason=f"{self.left():.0f} s left of the run's {self.args.deadline_s:.0f}")
        if "status" in record:
            self.say(f"phase {name}: skipped ({record['reason']})")
            self.save()
            return None
        self.say(f"phase {name}: up to {budget:.0f} s")
        started = time.monotonic()
        try:
            value = fn(started + budget)
            record["status"] = "ok"
        except Exception as exc:
            value = None
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[-3000:],
                          trace=traceback.format_exc(limit=6)[-2000:])
        record["seconds"] = round(time.monotonic() - started, 1)
        self.say(f"phase {name}: {record['status']} in {record['seconds']} s"
                 + (f": {record.get('error', '')[:300]}" if record["status"] != "ok" else ""))
        self.save()
        return value

    # --- processes

    def main_env(self) -> dict[str, str]:
        """The machine's Python with the overlay (and Trident's source) in front: builds, reference, workers."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(PYTHONPATH=f"{self.state['source']}{os.pathsep}{self.state['overlay']}", HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
                   PIP_CONFIG_FILE=os.devnull, TMPDIR=str(self.work / "tmp"))
        if self.args.dry_run:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def stub_env(self) -> dict[str, str]:
        env = self.main_env()
        env.pop("PYTHONPATH")  # the stub environment's .pth orders numpy 1.26, source, overlay, the machine's packages
        return env

    def call(self, command: list[str], log: str, until: float, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> None:
        with self.log_file(log).open("ab") as f:
            f.write(f"\n$ {' '.join(map(str, command))}\n".encode())
            f.flush()
            process = subprocess.Popen([str(c) for c in command], stdout=f, stderr=subprocess.STDOUT,
                                       env=env or self.main_env(), cwd=str(cwd or self.state.get("source", ROOT)),
                                       start_new_session=True)
            self.children.add(process)
            try:
                code = process.wait(timeout=max(1.0, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                kill_group(process)
                raise PhaseError(f"{Path(command[0]).name} {' '.join(map(str, command[1:4]))} ...: "
                                 f"stopped at its time limit (see {log}.log)") from None
            finally:
                self.children.discard(process)
        if code != 0:
            raise PhaseError(f"{' '.join(map(str, command[:4]))} ... exited {code}: {self.tail(log)}")

    def tail(self, log: str, lines: int = 12) -> str:
        text = self.log_file(log).read_text(errors="replace").splitlines()
        return " | ".join(text[-lines:])[-1500:]

    def worker(self, name: str, until: float, *extra: Any) -> dict[str, Any]:
        result = self.work / f"{name}.json"
        result.unlink(missing_ok=True)
        script = self.state["source"] / "bench" / "first_light.py"
        self.call([self.args.python, script, "worker", name, "--json", result, *extra], "workers", until)
        return json.loads(result.read_text())

    # --- the phases

    def setup(self, until: float) -> dict[str, Any]:
        manifest = json.loads((self.args.pack / MANIFEST).read_text())
        self.result["pack"] = {"folder": str(self.args.pack), "python": manifest.get("python"),
                               "size": manifest.get("size"), "left_out": manifest.get("left_out")}
        if self.args.dry_run and (PACK_DIR / MANIFEST).is_file():  # the dry run's own pack is xz -1: say both
            gpu_pack = json.loads((PACK_DIR / MANIFEST).read_text())
            self.result["gpu_pack"] = {"folder": str(PACK_DIR), "python": gpu_pack["python"],
                                       "size": gpu_pack["size"], "made": gpu_pack["made"]}
        python = self.args.python
        info = json.loads(subprocess.run([python, "-c", PYTHON_INFO], capture_output=True, text=True,
                                         check=True).stdout)
        self.result["figures"]["python"] = info
        if manifest["python"] != info["version"]:
            raise PhaseError(f"the pack is for Python {manifest['python']}, {python} is {info['version']}: "
                             f"make one with `bench/first_light.py pack --python-version {info['version']}`")
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "tmp").mkdir(parents=True)
        payload = self.work / "payload"
        for name in PAYLOAD:
            with lzma.open(self.args.pack / name) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
                tar.extractall(payload, filter="data")
        minilm = payload / "minilm"
        planes = minilm / ("model.safetensors" + PLANES_SUFFIX)
        (minilm / "model.safetensors").write_bytes(from_planes(planes.read_bytes()))
        planes.unlink()
        self.state["minilm"] = minilm
        if self.args.source == "pack" or not (ROOT / "trident").is_dir():
            source = self.work / "source"
            source.mkdir()
            with tarfile.open(payload / "source.tar") as tar:
                tar.extractall(source, filter="data")
            self.state["source"] = source
        else:
            self.state["source"] = ROOT
        self.result["source"] = {"used": str(self.state["source"]), "pack_commit": manifest["source"]["commit"],
                                 "tree_commit": _git_head()}
        overlay, stub = self.work / "site", self.work / "stubenv"
        self.state["overlay"] = overlay
        pip = [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
               "--disable-pip-version-check"]
        env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
        self.call([*pip, "--target", overlay, *sorted((payload / "wheels").glob("*.whl"))], "setup", until, env=env)
        # The stubs' Python: a venv of the same interpreter, numpy 1.26 first, then (through a .pth) Trident's
        # source, the overlay and the machine's own packages. `trident serve` runs under it, so
        # cli/triton_server.py puts its bin/ first on PATH and every stub embeds this environment.
        self.call([python, "-m", "venv", "--without-pip", stub], "setup", until, env=env)
        stub_python = stub / "bin" / "python"
        site = Path(json.loads(subprocess.run([stub_python, "-c", "import json,site;print(json.dumps("
                                                                 "site.getsitepackages()))"],
                                              capture_output=True, text=True, check=True).stdout)[0])
        self.call([*pip, "--target", site, *sorted((payload / "stub-wheels").glob("*.whl"))], "setup", until, env=env)
        lines = [str(self.state["source"]), str(overlay)]
        lines += [f"import site; site.addsitedir({p!r})" for p in info["site_packages"]]
        (site / "zz_trident_first_light.pth").write_text("\n".join(lines) + "\n")
        self.state["stub_python"] = stub_python
        main = self.env_report(python, self.main_env())
        report = {"main": main, "tritonserver": self.tritonserver_check(overlay, until)}
        self.result["figures"]["environments"] = report
        broken = {k: v for k, v in main.get("errors", {}).items() if k in MAIN_NEEDS or k == "report"}
        if broken:
            raise PhaseError(f"this Python cannot import {broken}")
        return report

    def check_stub_env(self, until: float) -> dict[str, Any]:
        """The stubs' environment imports what the Triton models import, with numpy 1.x (serve needs this)."""
        stubs = self.env_report(self.state["stub_python"], self.stub_env())
        self.result["figures"]["environments"]["stubs"] = stubs
        if not str(stubs.get("numpy", "")).startswith("1."):
            raise PhaseError(f"the stub environment has numpy {stubs.get('numpy')}, not 1.x: {stubs}")
        if stubs.get("errors"):
            raise PhaseError(f"the stub environment cannot import {stubs['errors']}")
        if stubs.get("libpython_shared") is not True:
            raise PhaseError(f"no shared libpython for the Triton stub: {stubs.get('libpython_shared')}")
        return stubs

    def env_report(self, python: Path | str, env: dict[str, str]) -> dict[str, Any]:
        done = subprocess.run([str(python), "-c", ENV_REPORT], capture_output=True, text=True, env=env, timeout=120)
        lines = done.stdout.strip().splitlines()  # some imports print to stdout: the report is the last line
        try:
            return json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            return {"errors": {"report": f"exit {done.returncode}: {(done.stdout + done.stderr)[-1500:]}"}}

    def tritonserver_check(self, overlay: Path, until: float) -> dict[str, Any]:
        binary = overlay / "pytriton" / "tritonserver" / "bin" / "tritonserver"
        done = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                              timeout=max(5, min(30, until - time.monotonic())))
        text = done.stdout + done.stderr
        return {"runs": "--model-repository" in text, "exit": done.returncode, "tail": text[-300:]}

    def checkpoints(self, until: float) -> dict[str, Any]:
        bert = self.work / "checkpoints" / "bert-base-random"
        made = self.worker("make-bert", until, "--out", bert, "--tokenizer-from", self.state["minilm"],
                           "--config", json.dumps(self.sizes["bert"]))
        self.state["bert"] = bert
        return made

    def build(self, until: float) -> dict[str, Any]:
        """Both builds at once (they are not timed: compile time is CPU work, the GPU is idle most of it)."""
        repository = self.work / "repository"
        models = {"all-MiniLM-L6-v2": self.state["minilm"], "bert-base-random": self.state["bert"]}
        processes = {}
        with self.log_file("build").open("ab") as log:
            for name, checkpoint in models.items():
                command = [self.args.python, "-m", "cli", "build", str(checkpoint), "--out", str(repository / name),
                           "--name", name, "--engine", "torch"]
                log.write(f"\n$ {' '.join(command)}\n".encode())
                log.flush()
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           env=self.main_env(), cwd=str(self.state["source"]), start_new_session=True)
                self.children.add(process)
                processes[name] = (process, time.monotonic())
            outputs, failures = {}, []
            for name, (process, started) in processes.items():
                try:
                    output, _ = process.communicate(timeout=max(1.0, until - time.monotonic()))
                except subprocess.TimeoutExpired:
                    kill_group(process)
                    output = process.communicate()[0]
                    failures.append(f"{name}: stopped at the phase's time limit")
                log.write(f"\n--- build of {name}\n".encode() + (output or b""))
                outputs[name] = {"exit": process.returncode, "seconds": round(time.monotonic() - started, 1)}
                if process.returncode != 0 and not any(f.startswith(name) for f in failures):
                    failures.append(f"{name}: exit {process.returncode}: "
                                    + " | ".join((output or b"").decode(errors="replace").splitlines()[-6:]))
        for name in models:
            manifest = repository / name / name / "manifest.json"
            if manifest.is_file():
                spec = json.loads(manifest.read_text())
                outputs[name].update(parity=spec.get("parity"), dtype=spec.get("dtype"),
                                     max_length=spec.get("max_length"))
        self.result["figures"]["builds"] = outputs
        if failures:
            raise PhaseError("; ".join(failures))
        self.state["repositories"] = [repository / name for name in models]
        return outputs

    def start_serve(self, until: float) -> dict[str, Any]:
        ports = {k: free_port() for k in ("port", "triton-http-port", "triton-grpc-port", "triton-metrics-port")}
        command = [self.state["stub_python"], "-m", "cli", "serve",
                   *(a for r in self.state["repositories"] for a in ("--repository", r)),
                   *(a for k, v in ports.items() for a in (f"--{k}", v)),
                   "--request-timeout", "300", "--log-format", "text", "--triton-log", self.triton_log]
        log = self.log_file("serve").open("ab")
        log.write(f"\n$ {' '.join(map(str, command))}\n".encode())
        log.flush()
        self.serve = subprocess.Popen([str(c) for c in command], stdout=log, stderr=subprocess.STDOUT,
                                      env=self.stub_env(), cwd=str(self.state["source"]), start_new_session=True)
        url = f"http://127.0.0.1:{ports['port']}"
        self.state["url"] = url
        started = time.monotonic()
        while time.monotonic() < until:
            if self.serve.poll() is not None:
                raise PhaseError(f"trident serve exited {self.serve.returncode}: {self.tail('serve')}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as models:
                        served = [m["id"] for m in json.loads(models.read())["data"]]
                    return {"seconds_to_healthy": round(time.monotonic() - started, 1), "models": served,
                            "url": url}
            time.sleep(0.5)
        raise PhaseError(f"trident serve was not healthy in time: {self.tail('serve')}")

    def check(self, until: float) -> dict[str, Any]:
        checked = self.worker("check", until, "--url", self.state["url"],
                              "--model", f"all-MiniLM-L6-v2={self.state['minilm']}",
                              "--model", f"bert-base-random={self.state['bert']}",
                              *(["--cpu"] if self.args.dry_run else []))
        self.result["figures"]["served_vs_sentence_transformers"] = checked
        stubs = stub_numpy(self.work)
        self.result["figures"]["stubs_numpy"] = stubs
        wrong = [s for s in stubs if not s["numpy"] or not all(p.startswith(str(self.work / "stubenv"))
                                                               for p in s["numpy"])]
        if not stubs or wrong:
            raise PhaseError(f"the Triton stubs do not all run numpy 1.26 from the stub environment: {stubs}")
        low = min(c["min_cosine"] for c in checked.values())
        self.result["figures"]["served_min_cosine"] = low
        if low < 0.999:
            raise PhaseError(f"served vectors differ from sentence-transformers: min cosine {low:.6f} < 0.999")
        return checked

    def http(self, until: float) -> dict[str, Any]:
        sizes = self.sizes
        workloads = self.worker("http", until, "--url", self.state["url"], "--model", "bert-base-random",
                                "--checkpoint", self.state["bert"], "--seconds", sizes["http_s"],
                                "--long-concurrency", sizes["long_concurrency"],
                                "--short-concurrency", sizes["short_concurrency"])
        figures = self.result["figures"]
        figures["http"] = workloads
        figures["http_tokens_per_s_500tok"] = workloads["long"]["tokens_per_s"]
        figures["http_requests_per_s_5tok_c64"] = workloads["short"]["requests_per_s"]
        figures["http_p50_ms_5tok_c64"] = workloads["short"]["p50_ms"]
        figures["http_p99_ms_5tok_c64"] = workloads["short"]["p99_ms"]
        errors = workloads["long"]["errors"] + workloads["short"]["errors"]
        if errors:
            raise PhaseError(f"{errors} requests failed under load (see workers.log and serve.log)")
        return workloads

    def stop_serve(self, until: float) -> dict[str, Any]:
        if self.serve is None:
            return {"stopped": "not running"}
        started = time.monotonic()
        kill_group(self.serve, grace_s=max(1.0, until - time.monotonic() - 3))
        self.copy_triton_log()
        return {"exit": self.serve.returncode, "seconds": round(time.monotonic() - started, 1)}

    @property
    def triton_log(self) -> Path:
        return self.work / "tritonserver.log"  # trident serve --triton-log: kept after it exits

    def copy_triton_log(self) -> None:
        if self.triton_log.exists():
            with self.log_file("triton").open("wb") as out:
                out.write(self.triton_log.read_bytes()[-4 * 2**20:])

    def gpu_bench(self, until: float) -> dict[str, Any]:
        json_out = self.work / "gpu_bench.json"
        budget = max(10.0, until - time.monotonic() - 45)  # gpu.py stops starting sections then; a started one ends
        command = [self.args.python, self.state["source"] / "bench" / "gpu.py", "--budget-s", f"{budget:.0f}",
                   "--json-out", json_out, "--minilm", self.state["minilm"],
                   *(["--smoke"] if self.args.dry_run else [])]
        error = None
        try:
            self.call(command, "gpu_bench", until, cwd=self.state["source"])
        except PhaseError as exc:
            error = exc
        bench = json.loads(json_out.read_text()) if json_out.is_file() else {}
        self.result["figures"]["gpu_bench"] = bench
        for key in ("bf16_ratio_bert", "bf16_ratio_8b", "fp8_ratio_8b", "fp8_cosine_real", "short_seq_ratio"):
            self.result[key] = bench.get(key)
        self.result["device"] = bench.get("device") or self.result["device"]
        if error:
            raise PhaseError(f"{error} (kept the sections it finished)")
        return {k: bench.get(k) for k in ("bf16_ratio_bert", "bf16_ratio_8b", "fp8_ratio_8b", "fp8_cosine_real",
                                          "short_seq_ratio", "seconds")}

    def run(self) -> int:
        def stop(signum: int, frame: object) -> None:
            raise SystemExit(f"stopped by signal {signum}")

        signal.signal(signal.SIGTERM, stop)
        phases = set(self.args.phases.split(","))
        # what the stack's phases leave for bench/gpu.py (setup is needed by both, so it reserves nothing)
        reserve = min(GPU_BENCH_RESERVE_S, 0.45 * self.args.deadline_s) if "gpu_bench" in phases else 0
        try:
            self.phase("setup", self.setup, CAPS["setup"])
            device = self.result["figures"].get("environments", {}).get("main", {}).get("device")
            self.result["device"] = device
            stack = phases & {"build", "serve", "check", "http"}
            if stack:
                # the stubs' environment first: if Triton cannot run here, building for it is time lost
                self.phase("stub_env", self.check_stub_env, CAPS["stub_env"], reserve, needs=["setup"])
                self.phase("checkpoints", self.checkpoints, CAPS["checkpoints"], reserve, needs=["stub_env"])
                self.phase("build", self.build, CAPS["build"], reserve, needs=["checkpoints"])
                self.result["figures"]["serve"] = self.phase("serve", self.start_serve, CAPS["serve"], reserve,
                                                             needs=["build", "stub_env"])
                if "check" in phases:
                    self.phase("check", self.check, CAPS["check"], reserve, needs=["serve"])
                if "http" in phases:
                    self.phase("http", self.http, CAPS["http"], reserve, needs=["serve"])
                self.phase("stop", self.stop_serve, CAPS["stop"], 0)
            if "gpu_bench" in phases:
                self.phase("gpu_bench", self.gpu_bench, float("inf"), reserve_s=10, needs=["setup"])
        except SystemExit as exc:
            self.result["stopped"] = str(exc)
            raise
        finally:
            for child in list(self.children):
                kill_group(child, grace_s=3)
            if self.serve is not None and self.serve.poll() is None:
                kill_group(self.serve, grace_s=5)
                self.copy_triton_log()
            self.summarize()
            self.save()
        failed = [n for n, p in self.result["phases"].items() if p["status"] != "ok"]
        self.say(f"done in {time.monotonic() - self.started:.0f} s; "
                 + (f"not ok: {', '.join(failed)}" if failed else "every phase ok")
                 + f"; {self.out / 'first_light.json'}")
        return 1 if failed else 0

    def summarize(self) -> None:
        figures = self.result["figures"]
        engine = (figures.get("gpu_bench") or {}).get("bert") or {}
        long_http = figures.get("http_tokens_per_s_500tok")
        engine_long = (engine.get("engine_long") or {}).get("per_s")
        if long_http and engine_long:
            figures["http_tokens_vs_engine_500tok"] = long_http / engine_long
            self.result["notes"] = {"http_tokens_vs_engine_500tok": (
                "tokens/s through HTTP + Triton over bench/gpu.py's engine alone, both a random BERT-base fp16 at "
                "500-token inputs" if not self.args.dry_run else
                "dry run: the served and the benchmarked toy models differ in size: meaningless")}
        values = {**figures, **{k: self.result[k] for k in ("bf16_ratio_bert", "bf16_ratio_8b", "fp8_ratio_8b",
                                                             "fp8_cosine_real", "short_seq_ratio")}}
        targets = {}
        for key, (op, bound) in TARGETS.items():
            value = values.get(key)
            met = None if value is None else (value >= bound if op == ">=" else value <= bound)
            targets[key] = {"target": f"{op} {bound}", "value": value,
                            "met": ("not measured" if met is None else "CPU toy run: says nothing" if
                                    self.args.dry_run else met)}
        self.result["targets"] = targets


def stub_numpy(work: Path) -> list[dict[str, Any]]:
    """Which numpy each running Python-backend stub of our models has mapped (/proc/PID/maps): the proof that
    the stubs embed the stub environment, not the machine's numpy 2."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if not command[0].endswith(b"triton_python_backend_stub") or not command[1].startswith(
                    str(work).encode()):
                continue
            maps = (proc / "maps").read_text()
        except (OSError, IndexError):
            continue
        numpy = sorted({line.split()[-1].rsplit("/numpy/", 1)[0] for line in maps.splitlines()
                        if "_multiarray_umath" in line and "/numpy/" in line})
        found.append({"pid": int(proc.name), "model": Path(command[1].decode()).parent.parent.name, "numpy": numpy})
    return sorted(found, key=lambda s: s["model"])


PYTHON_INFO = """
import json, site, sys, sysconfig
print(json.dumps({"version": f"{sys.version_info.major}.{sys.version_info.minor}", "full": sys.version.split()[0],
                  "executable": sys.executable, "base_executable": getattr(sys, "_base_executable", sys.executable),
                  "libdir": sysconfig.get_config_var("LIBDIR"), "shared": sysconfig.get_config_var("Py_ENABLE_SHARED"),
                  "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
                  "site_packages": [p for p in site.getsitepackages() if p]}))
"""
ENV_REPORT = """
import ctypes, importlib, json, os, sys, sysconfig
out, errors = {"python": sys.executable, "errors": {}}, {}
for name in ("numpy", "torch", "transformers", "tokenizers", "safetensors", "grpc", "google.protobuf", "fastapi",
             "pydantic", "uvicorn", "tritonclient.grpc", "pytriton", "trident.stages", "gateway.app"):
    try:
        module = importlib.import_module(name)
        out[name] = getattr(module, "__version__", "ok")
    except Exception as exc:
        out["errors"][name] = f"{type(exc).__name__}: {exc}"[:300]
try:
    import torch
    out["cuda"] = torch.cuda.is_available()
    out["device"] = torch.cuda.get_device_name(0) if out["cuda"] else "cpu"
except Exception as exc:
    out["device"] = f"unknown ({exc})"
lib = sysconfig.get_config_var("LDLIBRARY") or ""
name = f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
try:
    ctypes.CDLL(os.path.join(sysconfig.get_config_var("LIBDIR") or "", name))
    out["libpython_shared"] = True
except OSError:
    try:
        ctypes.CDLL(name)
        out["libpython_shared"] = True
    except OSError as exc:
        out["libpython_shared"] = f"missing: the Triton stub links {name} ({exc})"
print(json.dumps(out))
"""


def _git_head() -> str | None:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


# --- the dry run's stand-in for the GPU machine --------------------------------------------------------------


def stand_in_device(folder: Path, log: Callable) -> Path:
    """A venv whose packages are exactly DEVICE_PACKAGES as .venv has them (linked), with numpy 2 instead of
    .venv's 1.26: what the GPU machine offers, minus the GPU. Returns its python."""
    from importlib import metadata

    python = folder / "bin" / "python"
    if (folder / ".complete").is_file():
        return python
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import site;print(site.getsitepackages()[0])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    here = Path(metadata.distribution("pip").locate_file(""))
    dists = {normalize(d.metadata["Name"]): d for d in metadata.distributions(path=[str(here)])}
    # DEVICE_PACKAGES as .venv has them, plus what those versions require here (huggingface-hub 2 needs httpx2,
    # the machine's 1.33 does not); never what the pack must bring (OVERLAY), never .venv's numpy 1.26.
    wanted, todo = set(), [n for n in DEVICE_PACKAGES if n in dists]
    while todo:
        name = todo.pop()
        if name in wanted or name == "numpy" or (name in OVERLAY and name not in DEVICE_PACKAGES):
            continue
        wanted.add(name)
        for requirement in dists[name].requires or []:
            if "extra ==" not in requirement:
                required = normalize(re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0])
                if required in dists:
                    todo.append(required)
    linked = []
    for name in sorted(wanted):
        dist = dists[name]
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in sorted(tops):
            target = site / top
            if (here / top).exists() and not target.exists() and top != "__pycache__":
                target.symlink_to(here / top)
        linked.append(name)
    numpy2 = CACHE_DIR / "stand-in"
    numpy2.mkdir(parents=True, exist_ok=True)
    if not list(numpy2.glob("numpy-2*.whl")):
        log("downloading numpy 2 for the stand-in machine")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--dest", str(numpy2), "numpy>=2,<3"], check=True,
                       env={**os.environ, "PIP_CONSTRAINT": "", "PIP_CONFIG_FILE": os.devnull})
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(site),
                    *map(str, numpy2.glob("numpy-2*.whl"))], check=True, env={**os.environ, "PIP_CONFIG_FILE":
                                                                              os.devnull})
    (folder / "linked.json").write_text(json.dumps({"device_packages": sorted(set(linked) & DEVICE_PACKAGES),
                                                    "their_requirements_here": sorted(set(linked) - DEVICE_PACKAGES)},
                                                   indent=1))
    (folder / ".complete").touch()
    log(f"stand-in machine: {python} ({len(linked)} packages of the GPU machine's list, numpy 2)")
    return python


# --- workers (run under the machine's Python with the overlay) -----------------------------------------------


def worker_make_bert(args: argparse.Namespace) -> dict[str, Any]:
    """A random BERT with all-MiniLM-L6-v2's tokenizer, mean pooling + Normalize, 512 tokens."""
    import torch
    from transformers import BertConfig, BertModel

    out, source = Path(args.out), Path(args.tokenizer_from)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **json.loads(args.config))
    model = BertModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer_config["model_max_length"] = 512
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    (out / "modules.json").write_text(json.dumps(modules, indent=1))
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "2_Normalize").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    return {"parameters": sum(p.numel() for p in model.parameters()), "config": json.loads(args.config)}


def _post(url: str, body: dict, timeout: float) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def worker_check(args: argparse.Namespace) -> dict[str, Any]:
    """Served vectors (first request: compile included) against sentence-transformers in float32, same device."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    models = dict(m.split("=", 1) for m in args.model)
    url = f"{args.url}/v1/embeddings"

    def first(name: str) -> tuple[float, Any]:
        started = time.perf_counter()
        answer = _post(url, {"input": TEXTS, "model": name}, timeout=600)
        return time.perf_counter() - started, answer

    with ThreadPoolExecutor(len(models)) as pool:  # both engines compile at once
        firsts = dict(zip(models, pool.map(first, models), strict=True))
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    out = {}
    for name, checkpoint in models.items():
        first_s, answer = firsts[name]
        started = time.perf_counter()
        again = _post(url, {"input": TEXTS, "model": name}, timeout=600)
        again_s = time.perf_counter() - started
        served = np.array([d["embedding"] for d in answer["data"]], dtype=np.float64)
        repeat = np.array([d["embedding"] for d in again["data"]], dtype=np.float64)
        one_by_one = np.array([_post(url, {"input": t, "model": name}, timeout=600)["data"][0]["embedding"]
                               for t in TEXTS], dtype=np.float64)
        reference_model = SentenceTransformer(checkpoint, device=device, model_kwargs={"dtype": torch.float32})
        reference = reference_model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False).astype(np.float64)
        del reference_model

        def cosines(a, b):
            return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

        cos = cosines(served, reference)
        out[name] = {"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "texts": len(TEXTS),
                     "dim": int(served.shape[1]), "reference": f"sentence-transformers float32 on {device}",
                     "first_request_s": round(first_s, 2), "second_request_s": round(again_s, 3),
                     "batch_vs_alone_min_cosine": float(cosines(served, one_by_one).min()),
                     "repeat_max_abs_diff": float(np.abs(served - repeat).max()),
                     "usage_tokens": answer.get("usage", {}).get("total_tokens")}
    return out


def worker_http(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's workloads through the gateway: 500-token inputs (32 a request, tokens/s) and 5-token single
    requests (requests/s, p50/p99), each for --seconds with testkit.loadgen."""
    import asyncio

    from bench.run import effective_tokens, long_texts, short_texts
    from testkit.loadgen import run_load

    url, model = f"{args.url}/v1/embeddings", args.model[0]
    long, short = long_texts(256), short_texts(4096)
    tokens_long = effective_tokens(Path(args.checkpoint), long[:64], 512)
    tokens_short = effective_tokens(Path(args.checkpoint), short[:64], 512)

    def long_body(i: int) -> dict:
        start = (i * 32) % (len(long) - 32)
        return {"input": long[start:start + 32], "model": model}

    def short_body(i: int) -> dict:
        return {"input": short[i % len(short)], "model": model}

    for body in (long_body(0), short_body(0)):  # one of each first: a refusal is named, not just counted
        try:
            _post(url, body, timeout=300)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{exc.code} from {url}: {exc.read()[:500]!r}") from None
    result = asyncio.run(run_load(url, long_body, 32, tokens_long, args.long_concurrency, args.seconds,
                                  warmup_requests=4)).to_dict()
    result2 = asyncio.run(run_load(url, short_body, 1, tokens_short, args.short_concurrency, args.seconds,
                                   warmup_requests=64)).to_dict()
    return {"long": {**result, "tokens_per_input": tokens_long, "inputs_per_request": 32},
            "short": {**result2, "tokens_per_input": tokens_short, "inputs_per_request": 1}}


def no_nan(value: Any) -> Any:
    """NaN (a percentile of no latencies) is not JSON: null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value


WORKERS = {"make-bert": worker_make_bert, "check": worker_check, "http": worker_http}


# --- command line --------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="first_light.py", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = root.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="assemble the folder the GPU machine needs (here, with PyPI)")
    p.add_argument("--out", type=Path, default=PACK_DIR)
    p.add_argument("--python-version", default=TARGET_PYTHON, help="the GPU machine's Python (default 3.12)")
    p.add_argument("--wheels", type=Path, help="take the wheels from this folder instead of downloading them")
    p.add_argument("--minilm", type=Path, help=f"all-MiniLM-L6-v2 copy (default {MINILM_COPY.relative_to(ROOT)}, "
                                               "made by bench/gpu.py --prepare-minilm if missing)")
    p.add_argument("--preset", type=int, default=9, choices=range(10), help="xz preset (default 9, extreme)")
    p.add_argument("--no-extreme", dest="extreme", action="store_false")
    p.add_argument("--keep-minilm-precision", dest="bf16_minilm", action="store_false",
                   help="keep the fp16 weights as they are (the pack is ~8 MiB larger and no longer fits)")
    p.add_argument("--limit-mib", type=float, default=LIMIT_BYTES / 2**20)
    p.add_argument("--no-limit", dest="enforce_limit", action="store_false",
                   help="report the size but do not fail over the limit (the dry run's fast-compressed pack)")

    r = commands.add_parser("run", help="install from a pack and run every phase (gpu_first_light.sh)")
    r.add_argument("--pack", type=Path, help=f"the pack (default {PACK_DIR.relative_to(ROOT)}; dry run: its own)")
    r.add_argument("--out", type=Path, help="where first_light.json and the logs go (default $OUT, else "
                                            ".trident/first-light-out or, dry run, .trident/first-light-dry/out)")
    r.add_argument("--work", type=Path, help="scratch folder (default /tmp/trident-first-light)")
    r.add_argument("--python", help="the machine's Python (default: this one; dry run: the stand-in's)")
    r.add_argument("--deadline-s", type=float, help="the whole run ends by then (default 470; dry run 1500)")
    r.add_argument("--phases", default="build,serve,check,http,gpu_bench",
                   help="which to run (setup always): build,serve,check,http,gpu_bench")
    r.add_argument("--source", choices=["tree", "pack"], default="tree",
                   help="Trident's code: this checkout (default; the pack's copy where there is none) or the pack's")
    r.add_argument("--dry-run", action="store_true", help="this CPU, toy sizes, a pack for this Python")
    r.add_argument("--repack", action="store_true", help="dry run: make its pack again")

    w = commands.add_parser("worker")  # internal: one step under the machine's Python
    w.add_argument("name", choices=sorted(WORKERS))
    w.add_argument("--json", type=Path, required=True)
    w.add_argument("--out")
    w.add_argument("--tokenizer-from")
    w.add_argument("--config")
    w.add_argument("--url")
    w.add_argument("--model", action="append", default=[])
    w.add_argument("--checkpoint")
    w.add_argument("--cpu", action="store_true")
    w.add_argument("--seconds", type=float, default=20.0)
    w.add_argument("--long-concurrency", type=int, default=8)
    w.add_argument("--short-concurrency", type=int, default=64)
    return root


def run_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in run's defaults (device or dry run); makes the dry run's pack and stand-in machine if needed."""
    if args.dry_run:
        args.out = args.out or DRY_DIR / "out"
        args.work = args.work or DRY_DIR / "work"
        args.deadline_s = args.deadline_s or 1500.0
        if args.pack is None:
            args.pack = DRY_DIR / "pack"
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            manifest = args.pack / MANIFEST
            if args.repack or not manifest.is_file() or json.loads(manifest.read_text())["python"] != version:
                pack(parser().parse_args(["pack", "--out", str(args.pack), "--python-version", version,
                                          "--preset", "1", "--no-extreme", "--no-limit"]))
        args.python = args.python or str(stand_in_device(DRY_DIR / "device", print))
    else:
        env_out = os.environ.get("OUT")
        args.out = args.out or (Path(env_out) if env_out else ROOT / ".trident" / "first-light-out")
        args.work = args.work or Path("/tmp/trident-first-light")
        args.deadline_s = args.deadline_s or 470.0
        args.pack = args.pack or PACK_DIR
        args.python = args.python or sys.executable
    return args


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "pack":
        args.limit_bytes = int(args.limit_mib * 2**20)
        args.out.mkdir(parents=True, exist_ok=True)
        pack(args)
        return 0
    if args.command == "worker":
        sys.path.insert(0, str(Path.cwd()))
        result = WORKERS[args.name](args)
        args.json.write_text(json.dumps(no_nan(result), indent=1, default=float))
        return 0
    args = run_args(args)
    if not (args.pack / MANIFEST).is_file():
        raise SystemExit(f"no pack at {args.pack}: make it with `.venv/bin/python bench/first_light.py pack` "
                         f"where PyPI is reachable, and carry it")
    return Runner(args).run()


if __name__ == "__main__":
    sys.exit(main())
