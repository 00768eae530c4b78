"""bench/first_light.py without a GPU and without downloading: its arguments, the pack (from a small fake
wheel set), the size accounting, the trimming of nvidia-pytriton, the MiniLM transforms, and a run that
fails at once and still writes its JSON. The real pack and the dry run are `make gpu-pack` / `make gpu-dry-run`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import lzma
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
spec = importlib.util.spec_from_file_location("first_light", ROOT / "bench" / "first_light.py")
fl = importlib.util.module_from_spec(spec)
sys.modules["first_light"] = fl
spec.loader.exec_module(fl)

REQUIRED_KEYS = ("bf16_ratio_bert", "bf16_ratio_8b", "fp8_ratio_8b", "fp8_cosine_real", "short_seq_ratio", "device")


# --- arguments -------------------------------------------------------------------------------------------


def test_run_defaults_on_the_device(monkeypatch, tmp_path):
    monkeypatch.setenv("OUT", str(tmp_path / "out"))
    args = fl.run_args(fl.parser().parse_args(["run"]))
    assert args.out == tmp_path / "out" and args.pack == fl.PACK_DIR and args.deadline_s == 470
    assert args.work == Path("/tmp/trident-first-light") and args.python == sys.executable
    assert args.source == "tree" and set(args.phases.split(",")) == {"build", "serve", "check", "http", "gpu_bench"}
    # the run ends well inside the device tool's 540 s, after the gpu.py reserve and every cap
    assert args.deadline_s <= 480 and args.deadline_s > fl.GPU_BENCH_RESERVE_S


def test_pack_and_run_arguments():
    args = fl.parser().parse_args(["pack", "--python-version", "3.11", "--preset", "1", "--no-extreme"])
    assert (args.python_version, args.preset, args.extreme, args.bf16_minilm) == ("3.11", 1, False, True)
    assert fl.parser().parse_args(["pack"]).python_version == "3.12"
    run = fl.parser().parse_args(["run", "--dry-run", "--phases", "gpu_bench", "--deadline-s", "60"])
    assert run.dry_run and run.phases == "gpu_bench" and run.deadline_s == 60
    with pytest.raises(SystemExit):
        fl.parser().parse_args(["run", "--source", "elsewhere"])


def test_the_one_command_wraps_the_run_in_a_hard_limit():
    script = ROOT / "bench" / "gpu_first_light.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "bench/first_light.py run" in text and re.search(r"timeout .*\$limit", text)
    assert "FIRST_LIGHT_TIMEOUT_S:-525" in text  # < the 540 s the issue allows one device command


def test_logs_fit_what_comes_back_from_the_device():
    assert len(set(fl.LOGS)) + 1 <= 8  # at most 8 files come back: first_light.json and the logs


# --- what the device lacks -------------------------------------------------------------------------------


def _closure(requirements: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [(Requirement(r), set(Requirement(r).extras)) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        name = fl.normalize(requirement.name)
        if requirement.marker and not any(requirement.marker.evaluate({"extra": e}) for e in (extras or {""})):
            continue
        if name in seen:
            continue
        seen.add(name)
        if name in fl.DEVICE_PACKAGES:  # the device's own: its requirements are met there, at its versions
            continue
        for sub in metadata.requires(name) or []:
            parsed = Requirement(sub)
            if parsed.marker is None or any(parsed.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((parsed, set(parsed.extras)))
    return seen


def test_the_overlay_holds_what_the_serving_path_needs_beyond_the_device():
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    # served with --engine torch: no onnxruntime or openvino (the CPU engine's); only the gRPC client; pytriton
    # trimmed to its binary (no deps)
    wanted = [d.replace("tritonclient[grpc,http]", "tritonclient[grpc]") for d in dependencies
              if not d.startswith(("onnxruntime", "openvino", "nvidia-pytriton"))]
    missing = _closure(wanted) - fl.DEVICE_PACKAGES
    assert missing <= set(fl.OVERLAY) | set(fl.STUB_ONLY), missing - set(fl.OVERLAY)
    pins = fl.pins()
    assert all(name in pins for name in (*fl.OVERLAY, *fl.STUB_ONLY))
    assert pins["numpy"].startswith("1.")  # the stubs' numpy


# --- pack from a fake wheel set --------------------------------------------------------------------------


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes], tag: str = "py3-none-any",
               requires: tuple[str, ...] = ()) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in files.items():
            info = zipfile.ZipInfo(member)
            info.external_attr = (0o755 if member.endswith(("tritonserver", "_stub")) else 0o644) << 16
            z.writestr(info, data)
        z.writestr(f"{dist}.dist-info/METADATA", meta)
        z.writestr(f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        z.writestr(f"{dist}.dist-info/RECORD", "")
    return path


def fake_wheels(folder: Path, python: str = "3.12") -> Path:
    folder.mkdir()
    pins = fl.pins()
    elf = Path("/bin/ls").read_bytes()  # a real ELF: DT_NEEDED libc.so.6, like every kept binary
    for name in fl.OVERLAY:
        if name == "nvidia-pytriton":
            root = "pytriton/tritonserver/"
            files = {f"{root}bin/tritonserver": elf,
                     f"{root}backends/python/libtriton_python.so": b"not an elf",
                     f"{root}backends/python/triton_python_backend_utils.py": b"# utils\n",
                     f"{root}caches/local/libtritoncache_local.so": b"cache",
                     f"{root}python_backend_stubs/{python}/triton_python_backend_stub": b"stub",
                     f"{root}python_backend_stubs/3.9/triton_python_backend_stub": b"old stub" * 100,
                     "pytriton/__init__.py": b"from pytriton import client, model_config, triton\n",
                     "pytriton/client/__init__.py": b"# the Python API\n" * 50,
                     "nvidia_pytriton.libs/libc.so.6": b"needed by tritonserver",
                     "nvidia_pytriton.libs/libpython3-abc.13.so.1.0": b"x" * 5000}
            make_wheel(folder, name, pins[name], files, "py3-none-manylinux_2_35_x86_64",
                       requires=("numpy<2.0.0,>=1.21", "sh>=1.14"))
        else:
            module = name.replace("-", "_")
            make_wheel(folder, name, pins[name], {f"{module}/__init__.py": f"# {name}\n".encode() * 20})
    make_wheel(folder, "numpy", pins["numpy"], {"numpy/__init__.py": b"# numpy\n",
                                                "numpy/core/tests/test_big.py": b"# test\n" * 1000,
                                                "numpy/testing/__init__.py": b"# kept\n"},
               f"cp{python.replace('.', '')}-cp{python.replace('.', '')}-manylinux2014_x86_64")
    return folder


def fake_minilm(folder: Path) -> tuple[Path, np.ndarray]:
    folder.mkdir()
    weights = np.random.default_rng(0).normal(0, 0.05, size=(64, 33)).astype(np.float16)
    ids = np.arange(7, dtype=np.int64)
    header = {"w": {"dtype": "F16", "shape": list(weights.shape), "data_offsets": [0, weights.nbytes]},
              "position_ids": {"dtype": "I64", "shape": [7], "data_offsets": [weights.nbytes, weights.nbytes + 56]}}
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    (folder / "model.safetensors").write_bytes(len(head).to_bytes(8, "little") + head + weights.tobytes()
                                               + ids.tobytes())
    for name in ("config.json", "tokenizer.json", "modules.json", "data_config.json"):
        (folder / name).write_text("{}")
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text("{}")
    return folder, weights


def pack_args(tmp_path: Path, **overrides) -> argparse.Namespace:
    wheels = tmp_path / "wheels"
    if not wheels.exists():
        fake_wheels(wheels)
    minilm = tmp_path / "minilm"
    if not minilm.exists():
        fake_minilm(minilm)
    args = fl.parser().parse_args(["pack", "--out", str(tmp_path / "pack"), "--wheels", str(wheels),
                                   "--minilm", str(minilm), "--preset", "0", "--no-extreme"])
    args.limit_bytes = int(args.limit_mib * 2**20)
    args.out.mkdir(parents=True, exist_ok=True)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def extract(pack_dir: Path, into: Path) -> Path:
    for name in fl.PAYLOAD:
        with lzma.open(pack_dir / name) as xz, tarfile.open(fileobj=xz, mode="r|") as tar:
            tar.extractall(into, filter="data")
    return into


def test_pack_from_fake_wheels(tmp_path):
    args = pack_args(tmp_path)
    manifest = fl.pack(args, log=lambda message: None)
    on_disk = json.loads((args.out / fl.MANIFEST).read_text())
    assert on_disk == manifest and manifest["python"] == "3.12"
    assert sorted(p.name for p in args.out.iterdir()) == sorted([fl.MANIFEST, *fl.PAYLOAD])
    assert [w["name"] for w in manifest["overlay_wheels"]] == list(fl.OVERLAY)
    size = manifest["size"]
    assert size["fits"] and size["total_bytes"] == size["tree_bytes"] + size["carried_bytes"]
    assert size["carried_bytes"] >= sum(p["bytes"] for p in manifest["payload"].values())
    assert size["limit_bytes"] == 64 * 2**20 and size["tree_bytes"] > 100_000  # the checkout travels too
    assert manifest["source"]["commit"] == subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"],
                                                          capture_output=True, text=True).stdout.strip()
    assert any("other Python versions' stubs" in note for note in manifest["left_out"])
    assert any("numpy" in note and "test suites" in note for note in manifest["left_out"])

    payload = extract(args.out, tmp_path / "payload")
    wheels = sorted(p.name for p in (payload / "wheels").glob("*.whl"))
    assert len(wheels) == len(fl.OVERLAY) and any("0.7.0+trident.trimmed" in w for w in wheels)
    for wheel in (payload / "wheels").glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())  # xz does the compressing
    assert [p.name for p in (payload / "stub-wheels").glob("*.whl")] == [
        "numpy-1.26.4-cp312-cp312-manylinux2014_x86_64.whl"]
    assert (payload / "source.tar").is_file() and not (payload / "minilm" / "data_config.json").exists()


def test_trimmed_pytriton_keeps_what_triton_server_launches(tmp_path):
    args = pack_args(tmp_path)
    manifest = fl.pack(args, log=lambda message: None)
    trimmed = next(w for w in manifest["overlay_wheels"] if w["name"] == "nvidia-pytriton")["trimmed"]
    payload = extract(args.out, tmp_path / "payload")
    wheel = next((payload / "wheels").glob("nvidia_pytriton-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        record = z.read("nvidia_pytriton-0.7.0+trident.trimmed.dist-info/RECORD").decode()
        meta = z.read("nvidia_pytriton-0.7.0+trident.trimmed.dist-info/METADATA").decode()
        init = z.read("pytriton/__init__.py").decode()
        binary = z.getinfo("pytriton/tritonserver/bin/tritonserver")
        for line in record.splitlines():
            member, digest, _ = line.rsplit(",", 2)
            if digest:
                assert fl.record_line(member, z.read(member)) == line
    assert "pytriton/tritonserver/python_backend_stubs/3.12/triton_python_backend_stub" in names
    assert not any("/3.9/" in n or n.startswith("pytriton/client") for n in names)
    assert "nvidia_pytriton.libs/libc.so.6" in names  # DT_NEEDED of the kept binary
    assert "nvidia_pytriton.libs/libpython3-abc.13.so.1.0" not in names  # nothing kept links it
    assert "Version: 0.7.0+trident.trimmed" in meta and "Requires-Dist" not in meta
    assert "import" not in init and "__version__" in init  # `import pytriton` pulls in nothing
    assert binary.external_attr >> 16 & 0o111  # still executable
    assert trimmed["left_out_files"] == 4 and "pytriton/TRIMMED.json" in names


def test_pack_refuses_what_does_not_fit(tmp_path):
    args = pack_args(tmp_path, limit_bytes=200_000)
    with pytest.raises(SystemExit, match="does not fit"):
        fl.pack(args, log=lambda message: None)
    manifest = json.loads((args.out / fl.MANIFEST).read_text())  # written anyway: it says by how much
    assert not manifest["size"]["fits"] and manifest["size"]["margin_bytes"] < 0


def test_pack_names_a_missing_wheel(tmp_path):
    args = pack_args(tmp_path)
    next(args.wheels.glob("grpcio-*.whl")).unlink()
    with pytest.raises(SystemExit, match="no wheel of grpcio"):
        fl.pack(args, log=lambda message: None)


# --- the pieces --------------------------------------------------------------------------------------------


def test_elf_needed_reads_a_real_binary():
    assert "libc.so.6" in fl.elf_needed(Path("/bin/ls").read_bytes())
    assert fl.elf_needed(b"#!/bin/sh\n") == [] and fl.elf_needed(b"") == []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_icu_placeholder_defines_the_one_symbol():
    data = fl.icu_placeholder("libicudata-c1404396.so.70.1", "70", log=print)
    assert data.startswith(b"\x7fELF") and b"icudt70_dat" in data and b"libicudata-c1404396.so.70.1" in data
    assert len(data) < 20_000
    assert fl.ICU_DATA.fullmatch("libicudata-c1404396.so.70.1").group(1) == "70"


@pytest.mark.parametrize("body", [0, 1, 2, 1001])
def test_planes_are_a_byte_permutation(body):
    header = json.dumps({"x": 1}).encode()
    data = len(header).to_bytes(8, "little") + header + random.Random(body).randbytes(body)
    assert fl.from_planes(fl.to_planes(data)) == data
    assert len(fl.to_planes(data)) == len(data)


def test_minilm_rounding_is_bf16s_and_leaves_other_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    folder, weights = fake_minilm(tmp_path / "m")
    before = (folder / "model.safetensors").read_bytes()
    report = fl.bf16_precision(folder / "model.safetensors")
    after = (folder / "model.safetensors").read_bytes()
    assert report["weights_rounded"] == weights.size and len(after) == len(before)
    head = 8 + int.from_bytes(after[:8], "little")
    rounded = np.frombuffer(after[head : head + weights.nbytes], dtype=np.float16)
    expected = torch.from_numpy(weights).to(torch.bfloat16).to(torch.float16).numpy().ravel()
    assert np.array_equal(rounded, expected) and not np.array_equal(rounded, weights.ravel())
    assert after[head + weights.nbytes :] == before[head + weights.nbytes :]  # the int64 tensor untouched


# --- a run: hard limits, and the JSON is always written ---------------------------------------------------


def runner_args(tmp_path: Path, manifest: dict) -> argparse.Namespace:
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / fl.MANIFEST).write_text(json.dumps(manifest))
    args = fl.parser().parse_args(["run", "--pack", str(pack_dir), "--out", str(tmp_path / "out"), "--work",
                                   str(tmp_path / "work"), "--deadline-s", "120"])
    return fl.run_args(args)


def test_a_run_that_cannot_start_still_writes_every_key(tmp_path):
    args = runner_args(tmp_path, {"python": "2.7", "source": {"commit": "x"}})
    before = signal.getsignal(signal.SIGTERM)
    try:
        code = fl.Runner(args).run()
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == 1
    result = json.loads((args.out / "first_light.json").read_text())
    assert all(key in result for key in REQUIRED_KEYS) and result["bf16_ratio_bert"] is None
    assert result["phases"]["setup"]["status"] == "failed" and "pack is for Python 2.7" in result["phases"][
        "setup"]["error"]
    assert {result["phases"][p]["status"] for p in ("checkpoints", "build", "serve", "gpu_bench")} == {"skipped"}
    assert all(t["met"] == "not measured" for t in result["targets"].values())
    assert not result["dry_run"] and "measured in this run" in result["figures_are"]
    assert sorted(p.name for p in args.out.iterdir()) == ["driver.log", "first_light.json"]


def test_a_phase_is_stopped_at_its_limit(tmp_path):
    args = runner_args(tmp_path, {"python": "3.12"})
    runner = fl.Runner(args)
    started = time.monotonic()
    with pytest.raises(fl.PhaseError, match="time limit"):
        runner.call(["sleep", "30"], "workers", until=time.monotonic() + 1, env=dict(os.environ), cwd=tmp_path)
    assert time.monotonic() - started < 15 and not runner.children


def test_targets_say_what_was_met_and_a_dry_run_says_nothing(tmp_path):
    args = runner_args(tmp_path, {"python": "3.12"})
    runner = fl.Runner(args)
    runner.result.update(bf16_ratio_bert=1.5, fp8_ratio_8b=1.9)
    runner.result["figures"].update(http_p99_ms_5tok_c64=42.0, http_tokens_per_s_500tok=800.0,
                                    gpu_bench={"bert": {"engine_long": {"per_s": 1000.0}}})
    runner.summarize()
    targets = runner.result["targets"]
    assert targets["bf16_ratio_bert"]["met"] is True and targets["fp8_ratio_8b"]["met"] is False
    assert targets["http_p99_ms_5tok_c64"]["met"] is True and targets["bf16_ratio_8b"]["met"] == "not measured"
    assert targets["http_tokens_vs_engine_500tok"]["value"] == pytest.approx(0.8)
    runner.args.dry_run = True
    runner.summarize()
    assert runner.result["targets"]["bf16_ratio_bert"]["met"] == "CPU toy run: says nothing"
