"""`make bench`'s precision table: every engine variant this CPU allows, and the peers a user would pick on it.

Same run, same inputs as bench/run.py's tokens workload (256-token inputs, 32 per request, concurrency 8):
- each variant (trident.precision.VARIANTS) built with `--precision <variant>` (cached) and served over HTTP;
- each variant's engine alone on 32 x 256 tokens, in model FLOP/s, against the CPU's own matmul ceiling for
  its precision (float32, bf16, int8 GEMMs through torch / oneDNN, the same thread count);
- sentence-transformers in-process in float32 and bf16 (`model.to(torch.bfloat16)`), and its own
  `backend="onnx"` / `backend="openvino"` (their int8 exports too) from `.venv-st` (`make peers-st`);
- infinity-emb's best engine, from bench/run.py's own run of it.
Every contender's cosine to float32 sentence-transformers and its recall@10 of each text's nearest neighbours
(trident.gate) are measured on the gate's texts: the targets count only contenders at >= 0.99 and >= 0.95. The
CPU's flags are printed with the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ST_VENV = ROOT / ".venv-st"
MATMUL_SIZE = 2048
ST_PEER_SCRIPT = '''
import json, sys, time
import numpy as np
from sentence_transformers import SentenceTransformer
model_dir, backend, variant, out = sys.argv[1:5]
long, gate = json.load(sys.stdin)
kwargs = {"file_name": variant} if variant else {}
model = SentenceTransformer(model_dir, device="cpu", backend=backend, model_kwargs=kwargs)
model.encode(long[:32], batch_size=32)
started = time.perf_counter()
model.encode(long, batch_size=32)
seconds = time.perf_counter() - started
np.save(out, model.encode(gate, batch_size=32, normalize_embeddings=True))
print(json.dumps({"seconds": seconds}))
'''


def cpu_report() -> dict:
    from trident import cpu

    flags = cpu.cpu_flags()
    return {"name": cpu.cpu_name(), "kind": cpu.cpu_kind(flags), "relevant_flags": cpu.relevant_flags(flags),
            "cores": len(os.sched_getaffinity(0)), "all_flags": " ".join(sorted(flags)),
            "load": os.getloadavg()}


def recall_at_10(vectors: np.ndarray, reference: np.ndarray) -> float:
    """Mean recall@10 of each gate text's nearest neighbours against the reference's (the gate's figure)."""
    from trident.gate import neighbour_recall

    return float(neighbour_recall(reference, vectors).mean())


def cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


# --- the CPU's ceilings -----------------------------------------------------------------------------------


def matmul_ceilings(threads: int, seconds: float = 2.0) -> dict[str, float]:
    """GEMM FLOP/s (int8: OP/s) of MATMUL_SIZE^3 in float32, bf16 and int8 (torch / oneDNN)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    operands = {"fp32": (a, a.clone()), "bf16": (a.bfloat16(), a.bfloat16().clone()),
                "int8": (torch.randint(-64, 64, a.shape, dtype=torch.int8),) * 2}
    ceilings = {}
    for precision, (x, y) in operands.items():
        multiply = torch._int_mm if precision == "int8" else torch.matmul
        try:
            multiply(x, y)
        except RuntimeError as exc:  # no int8 GEMM in this torch on this CPU
            ceilings[precision] = float("nan")
            print(f"... {precision} matmul: {exc}", flush=True)
            continue
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            multiply(x, y)
            runs += 1
        ceilings[precision] = 2 * MATMUL_SIZE**3 * runs / (time.perf_counter() - started)
    return ceilings


def flops_per_token(model_dir: Path, tokens: int) -> float:
    config = json.loads((model_dir / "config.json").read_text())
    d, layers, ffn = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    return layers * (2 * (4 * d * d + 2 * d * ffn) + 4 * tokens * d)  # projections, FFN, attention


def engine_tokens_per_s(engine, tokens: int, seconds: float = 4.0) -> float:
    """An engine alone on 32 inputs of `tokens` tokens, run for at least `seconds` (and twice)."""
    sequences = [np.full(tokens, 1000, dtype=np.int64) for _ in range(32)]
    engine.run(sequences)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or runs < 2:
        engine.run(sequences)
        runs += 1
    return 32 * tokens * runs / (time.perf_counter() - started)


# --- Trident's variants -----------------------------------------------------------------------------------


def variant_repositories(model_dir: Path, progress=print) -> tuple[dict[str, Path], dict[str, str]]:
    """One build per variant this CPU allows, through `trident serve`'s own cache; a variant that failed the gate
    in the default (auto) build is reported with its figures from that build's table, not built again."""
    from builder.errors import BuildError
    from builder.variants import candidates_for
    from cli.main import _build_options
    from cli.main import parser as cli_parser
    from cli.models import DEFAULT_MODEL_NAME
    from cli.serve import ModelArg, prepare_model
    from trident import cpu
    from trident.spec import ModelSpec

    options = _build_options(cli_parser().parse_args(["serve"]))
    model = ModelArg(str(model_dir), DEFAULT_MODEL_NAME)
    auto = prepare_model(model, {**options, "precision": "auto"}, progress=lambda _: None)
    table = ModelSpec.load(auto / DEFAULT_MODEL_NAME / "manifest.json").variant_choice.get("candidates", [])
    refused = {row["variant"]: f"fails the gate (auto build: {row.get('error') or _figures(row)}); never served"
               for row in table if row.get("passed") is False}  # None: not gated (a faster one passed)
    repositories = {}
    for row in candidates_for("auto", cpu.cpu_flags(), 1 << 40):
        if row.name in refused:
            continue
        progress(f"... building {DEFAULT_MODEL_NAME} --precision {row.name}")
        try:
            repositories[row.name] = prepare_model(model, {**options, "precision": row.name}, progress=lambda _: None)
        except BuildError as exc:
            refused[row.name] = str(exc)
    return repositories, refused


def _figures(row: dict) -> str:
    cosine, score = row.get("min_cosine", float("nan")), row.get("max_score_diff", float("nan"))
    recall = row.get("recall_at_10", float("nan"))
    angle = f"min cosine {cosine:.4f}" if cosine == cosine else f"max |score diff| {score:.4f}"
    return angle + (f", recall@10 {recall:.4f}" if recall == recall else "")


def engine_alone(repository: Path, name: str, model_dir: Path, tokens: int, threads: int) -> dict:
    from trident.model_names import step_files
    from trident.precision import open_engine
    from trident.spec import ModelSpec

    spec = ModelSpec.load(repository / name / "manifest.json")
    engine = open_engine(spec.variant, step_files(repository, name, "engine"), spec, threads)
    tokens_per_s = engine_tokens_per_s(engine, tokens)
    return {"tokens_per_s": tokens_per_s, "flops": tokens_per_s * flops_per_token(model_dir, tokens),
            "gate": spec.variant_choice.get("gate", {})}


def over_http(repository: Path, name: str, long: list[str], tokens_long: int, seconds: float, gate: list[str],
              logs: Path) -> dict:
    from testkit.loadgen import run_load
    from testkit.stack import Stack, embed

    def body(i: int) -> dict:
        start = (i * 32) % (len(long) - 32)
        return {"input": long[start:start + 32], "model": name}

    stack = Stack(["--repository", str(repository)], logs / f"trident-{repository.name}.log").start()
    try:
        vectors = embed(stack, name, gate)
        load = asyncio.run(run_load(f"{stack.base_url}/v1/embeddings", body, 32, tokens_long, 8, seconds,
                                    warmup_requests=4)).to_dict()
    finally:
        stack.stop()
    return {"tokens_per_s": load["tokens_per_s"], "vectors": vectors}


# --- peers ------------------------------------------------------------------------------------------------


def sentence_transformers_in_process(model_dir: Path, long: list[str], tokens_long: int, gate: list[str]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    runs = {}
    for dtype in ("fp32", "bf16"):
        model = SentenceTransformer(str(model_dir), device="cpu")
        if dtype == "bf16":
            model = model.to(torch.bfloat16)
        model.encode(long[:32], batch_size=32)
        started = time.perf_counter()
        model.encode(long[:256], batch_size=32)
        runs[f"sentence-transformers {dtype}"] = {
            "tokens_per_s": 256 * tokens_long / (time.perf_counter() - started),
            "vectors": model.encode(gate, batch_size=32, normalize_embeddings=True)}
    return runs


def sentence_transformers_backends(model_dir: Path, long: list[str], tokens_long: int, gate: list[str],
                                   work: Path) -> dict:
    """ST's own ONNX and OpenVINO backends (and their int8 exports) in .venv-st; skipped where it is absent."""
    python = ST_VENV / "bin" / "python"
    if not python.exists():
        return {"sentence-transformers onnx / openvino": {"error": "no .venv-st (make peers-st)"}}
    folder = _st_model_copy(model_dir, work, python)
    runs = {}
    for backend, variant in (("onnx", ""), ("onnx", f"onnx/model_qint8_{_onnx_int8_config()}.onnx"),
                             ("openvino", ""), ("openvino", "openvino/openvino_model_qint8_quantized.xml")):
        label = f"sentence-transformers {backend}{' int8' if variant else ''}"
        out = work / f"{backend}-{bool(variant)}.npy"
        done = subprocess.run([str(python), "-c", ST_PEER_SCRIPT, str(folder), backend, variant, str(out)],
                              input=json.dumps([long[:256], gate]), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            runs[label] = {"error": done.stderr.strip().splitlines()[-1][:200] if done.stderr else "failed"}
            continue
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        runs[label] = {"tokens_per_s": 256 * tokens_long / seconds, "vectors": np.load(out)}
    return runs


def _onnx_int8_config() -> str:
    """ST's ONNX int8 export for this CPU: its avx512_vnni config where the CPU has VNNI, else avx2."""
    from trident import cpu

    return "avx512_vnni" if cpu.has_any(cpu.cpu_flags(), cpu.VNNI_FLAGS) else "avx2"


def _st_model_copy(model_dir: Path, work: Path, python: Path) -> Path:
    """The checkpoint with ST's own exports beside it: onnx/, openvino/, and their int8 versions."""
    import shutil

    onnx_int8 = _onnx_int8_config()
    folder = work / "st-model"
    if not (folder / "openvino").exists():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(model_dir, folder)
        script = f'''
from sentence_transformers import (SentenceTransformer, export_dynamic_quantized_onnx_model,
                                   export_static_quantized_openvino_model)
onnx = SentenceTransformer({str(folder)!r}, device="cpu", backend="onnx")
onnx.save_pretrained({str(folder)!r})
export_dynamic_quantized_onnx_model(onnx, {onnx_int8!r}, {str(folder)!r})
ov = SentenceTransformer({str(folder)!r}, device="cpu", backend="openvino")
ov.save_pretrained({str(folder)!r})
from optimum.intel import OVQuantizationConfig  # its calibration set comes from the hub: fails offline
export_static_quantized_openvino_model(ov, OVQuantizationConfig(), {str(folder)!r})
'''
        subprocess.run([str(python), "-c", script], check=False, timeout=1200,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return folder


# --- the table --------------------------------------------------------------------------------------------


def precision_table(model_dir: Path, long: list[str], tokens_long: int, results: dict, seconds: float,
                    out: Path, logs: Path) -> dict:
    from builder.gate_texts import gate_texts
    from cli.models import DEFAULT_MODEL_NAME

    gate = gate_texts()
    report: dict = {"cpu": cpu_report()}
    print(f"... precision table on {report['cpu']['name']} ({report['cpu']['kind']}: "
          f"{' '.join(report['cpu']['relevant_flags'])}), load {report['cpu']['load']}", flush=True)
    threads = report["cpu"]["cores"]
    contenders: dict[str, dict] = {}
    contenders.update(sentence_transformers_in_process(model_dir, long, tokens_long, gate))
    reference = contenders["sentence-transformers fp32"]["vectors"]
    repositories, refused = variant_repositories(model_dir)
    for name, reason in refused.items():
        contenders[f"trident {name}"] = {"error": reason}
    for name, repository in repositories.items():
        print(f"... Trident {name}", flush=True)
        row = over_http(repository, DEFAULT_MODEL_NAME, long, tokens_long, seconds, gate, logs)
        row["engine"] = engine_alone(repository, DEFAULT_MODEL_NAME, model_dir, 256, threads)
        contenders[f"trident {name}"] = row
    print("... sentence-transformers backends", flush=True)
    contenders.update(sentence_transformers_backends(model_dir, long, tokens_long, gate, out / "st-peers"))
    infinity = results.get("infinity", {})
    if "tokens" in infinity:
        engine = infinity["engine"]["tokens"]
        contenders[f"infinity-emb {engine}"] = {"tokens_per_s": infinity["tokens"]["tokens_per_s"]}
    ceilings = matmul_ceilings(threads)
    report["matmul_ceilings"] = ceilings
    for row in contenders.values():
        if "vectors" in row:
            vectors = row.pop("vectors")
            row["min_cosine"], row["recall_at_10"] = cosine_min(vectors, reference), recall_at_10(vectors, reference)
    report["contenders"] = contenders
    report["targets"] = targets(contenders, ceilings)
    print(render(report), flush=True)
    return report


def _ok(row: dict) -> bool:
    """A contender that counts: it ran, at cosine >= 0.99 and recall@10 >= 0.95 to float32 (infinity-emb's float32
    engines, not measured: taken as 1)."""
    return "tokens_per_s" in row and row.get("min_cosine", 1.0) >= 0.99 and row.get("recall_at_10", 1.0) >= 0.95


def targets(contenders: dict[str, dict], ceilings: dict[str, float]) -> dict:
    """The issue's targets: the best Trident variant over HTTP against sentence-transformers' fastest
    configuration in-process (any dtype or backend at cosine >= 0.99 and recall@10 >= 0.95; its backends alone are
    shown beside) and against infinity-emb's best engine; the engine alone against the matmul ceiling of its own
    precision."""
    from trident.precision import variant

    def best(prefixes: tuple[str, ...]) -> str | None:
        ran = {k: v for k, v in contenders.items() if k.startswith(prefixes) and _ok(v)}
        return max(ran, key=lambda k: ran[k]["tokens_per_s"], default=None)

    picks = {"trident": best(("trident ",)),
             "sentence_transformers": best(("sentence-transformers ",)),  # any dtype or backend that passes
             "sentence_transformers_backend": best(("sentence-transformers onnx", "sentence-transformers openvino")),
             "infinity": best(("infinity-emb",))}
    result: dict = dict(picks)
    if picks["trident"] is None:
        return result
    trident = contenders[picks["trident"]]
    for key in ("sentence_transformers", "sentence_transformers_backend", "infinity"):
        if picks[key]:
            result[f"vs_{key}"] = trident["tokens_per_s"] / contenders[picks[key]]["tokens_per_s"]
    precision = variant(picks["trident"].removeprefix("trident ")).precision
    result["engine_vs_ceiling"] = trident["engine"]["flops"] / ceilings[precision]
    result["ceiling_precision"] = precision
    return result


def render(report: dict) -> str:
    cpu = report["cpu"]
    lines = [f"CPU: {cpu['name']}, {cpu['cores']} cores, kind {cpu['kind']}, load {cpu['load']}",
             f"flags: {' '.join(cpu['relevant_flags'])}",
             f"{'contender':<42} {'tokens/s HTTP|in-proc':>22} {'engine tok/s':>13} {'engine GFLOP/s':>15} "
             f"{'min cos':>8} {'recall@10':>9}"]
    for name, row in report["contenders"].items():
        if "tokens_per_s" not in row:
            lines.append(f"{name:<42} {row.get('error', 'did not run')}")
            continue
        engine = row.get("engine", {})
        lines.append(f"{name:<42} {row['tokens_per_s']:>22,.0f} {engine.get('tokens_per_s', 0):>13,.0f} "
                     f"{engine.get('flops', 0) / 1e9:>15,.1f} {row.get('min_cosine', float('nan')):>8.5f} "
                     f"{row.get('recall_at_10', float('nan')):>9.4f}")
    lines.append("matmul ceilings (GFLOP/s, int8 GOP/s): " + ", ".join(
        f"{k} {v / 1e9:,.0f}" for k, v in report["matmul_ceilings"].items()))
    t = report["targets"]
    nan = float("nan")
    lines.append(f"targets: best Trident ({t.get('trident')}) over HTTP vs {t.get('sentence_transformers')} "
                 f"in-process: {t.get('vs_sentence_transformers', nan):.2f}x (target >= 1.3); vs {t.get('infinity')}: "
                 f"{t.get('vs_infinity', nan):.2f}x (>= 1.5); engine alone at {t.get('engine_vs_ceiling', nan):.0%} "
                 f"of the {t.get('ceiling_precision')} matmul (>= 50%)")
    lines.append(f"beside: vs {t.get('sentence_transformers_backend')} in-process: "
                 f"{t.get('vs_sentence_transformers_backend', nan):.2f}x")
    return "\n".join(lines)


if __name__ == "__main__":  # the table alone (no infinity-emb): .venv/bin/python bench/precision.py
    sys.path.insert(0, str(ROOT))
    from bench.run import effective_tokens, long_texts
    from cli.models import default_model_dir

    directory = default_model_dir()
    texts = long_texts(512)
    results_dir = ROOT / "bench" / "results"
    (results_dir / "logs").mkdir(parents=True, exist_ok=True)
    table = precision_table(directory, texts, effective_tokens(directory, texts[:64], 256), {},
                            float(os.environ.get("BENCH_SECONDS", "15")), results_dir, results_dir / "logs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results_dir / f"precision-{stamp}.json").write_text(json.dumps(table, indent=2, default=float))
