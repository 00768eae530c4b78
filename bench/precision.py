"""`make bench`'s precision table: every engine variant this CPU allows, and the peers a user would pick on it.

Same run, same inputs as bench/run.py's tokens workload (256-token inputs, 32 per request, concurrency 8):
- each variant (trident.precision.VARIANTS) built with `--precision <variant>` (cached) and served over HTTP;
- each variant's engine alone on 32 x 256 tokens, in model FLOP/s, against the CPU's own matmul ceiling for
  its precision (float32, bf16, int8 GEMMs through torch / oneDNN, the same thread count);
- sentence-transformers in-process in float32 and bf16 (`model.to(torch.bfloat16)`), and its own
  `backend="onnx"` (its O1-O4 optimized exports and its int8 export for this CPU) and `backend="openvino"` (its
  static int8 export, calibrated offline on builder/calibration.py's texts) from `.venv-st` (`make peers-st`);
- infinity-emb's best engine, from bench/run.py's own run of it (the default model only).
Every contender's cosine to float32 sentence-transformers and its recall@10 of each text's nearest neighbours
(trident.gate) are measured on the gate's texts: the targets count only contenders at >= 0.99 and >= 0.95. The
CPU's flags are printed with the figures.

A second table times the same contenders on a BERT-base-sized model (12 layers, hidden 768; random weights in
the default model's layout): speed only, its vectors mean nothing, so there a contender counts when the same
configuration passed on the default model's real weights.
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
if gate:
    np.save(out, model.encode(gate, batch_size=32, normalize_embeddings=True))
print(json.dumps({"seconds": seconds}))
'''
ST_EXPORTS_DONE = "trident-peer-exports-2"  # written when every export below has been tried
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}


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


# --- the models -------------------------------------------------------------------------------------------


def bert_base_checkpoint(model_dir: Path, out: Path) -> Path:
    """A BERT-base-sized checkpoint in `model_dir`'s layout (its tokenizer, pooling and normalization), random
    weights from a fixed seed: the same files, so the same build cache key, in every run."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    if (out / "model.safetensors").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("model.safetensors", "README.md"))
    config = {**json.loads((model_dir / "config.json").read_text()), **BERT_BASE}
    torch.manual_seed(0)
    BertModel(BertConfig(**config)).save_pretrained(out)
    pooling = out / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()),
                                   "word_embedding_dimension": BERT_BASE["hidden_size"]}, indent=2))
    return out


# --- Trident's variants -----------------------------------------------------------------------------------


def variant_repositories(model_dir: Path, name: str, progress=print) -> tuple[dict[str, Path], dict[str, str]]:
    """One build per variant this CPU allows, through `trident serve`'s own cache; a variant that failed the gate
    in the default (auto) build is reported with its figures from that build's table, not built again."""
    from builder.errors import BuildError
    from builder.variants import candidates_for
    from cli.main import _build_options
    from cli.main import parser as cli_parser
    from cli.serve import ModelArg, prepare_model
    from trident import cpu
    from trident.spec import ModelSpec

    options = _build_options(cli_parser().parse_args(["serve"]))
    model = ModelArg(str(model_dir), name)
    progress(f"... building {name} --precision auto")
    auto = prepare_model(model, {**options, "precision": "auto"}, progress=lambda _: None)
    table = ModelSpec.load(auto / name / "manifest.json").variant_choice.get("candidates", [])
    refused = {row["variant"]: f"fails the gate (auto build: {row.get('error') or _figures(row)}); never served"
               for row in table if row.get("passed") is False}  # None: not gated (a faster one passed)
    repositories = {}
    for row in candidates_for("auto", cpu.cpu_flags(), 1 << 40):
        if row.name in refused:
            continue
        progress(f"... building {name} --precision {row.name}")
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
              logs: Path, concurrency: int = 8) -> dict:
    """Tokens/s of the tokens workload over HTTP, and the vectors of `gate` (none when it is empty). A request
    may wait behind `concurrency` - 1 others of 32 x 256 tokens: on a BERT-base-sized float32 engine that is over
    the gateway's default 60 s deadline, hence a longer one."""
    from testkit.loadgen import run_load
    from testkit.stack import Stack, embed

    def body(i: int) -> dict:
        start = (i * 32) % (len(long) - 32)
        return {"input": long[start:start + 32], "model": name}

    stack = Stack(["--repository", str(repository), "--request-timeout", "600"],
                  logs / f"trident-{repository.name}.log").start()
    try:
        row = {"vectors": embed(stack, name, gate)} if gate else {}
        load = asyncio.run(run_load(f"{stack.base_url}/v1/embeddings", body, 32, tokens_long, concurrency, seconds,
                                    warmup_requests=4)).to_dict()
    finally:
        stack.stop()
    return {"tokens_per_s": load["tokens_per_s"], **row}


# --- peers ------------------------------------------------------------------------------------------------


def sentence_transformers_in_process(model_dir: Path, long: list[str], tokens_long: int, gate: list[str]) -> dict:
    """`encode` of `long` in float32 and bf16, 32 per batch, after one batch of warm-up."""
    import torch
    from sentence_transformers import SentenceTransformer

    runs = {}
    for dtype in ("fp32", "bf16"):
        model = SentenceTransformer(str(model_dir), device="cpu")
        if dtype == "bf16":
            model = model.to(torch.bfloat16)
        model.encode(long[:32], batch_size=32)
        started = time.perf_counter()
        model.encode(long, batch_size=32)
        row = {"tokens_per_s": len(long) * tokens_long / (time.perf_counter() - started)}
        if gate:
            row["vectors"] = model.encode(gate, batch_size=32, normalize_embeddings=True)
        runs[f"sentence-transformers {dtype}"] = row
    return runs


def st_backends() -> list[tuple[str, str, str]]:
    """(label, backend, file) of every sentence-transformers ONNX / OpenVINO configuration _st_model_copy writes."""
    int8 = _onnx_int8_config()
    return [("sentence-transformers onnx", "onnx", ""),
            *[(f"sentence-transformers onnx {level}", "onnx", f"onnx/model_{level}.onnx")
              for level in ("O1", "O2", "O3", "O4")],
            (f"sentence-transformers onnx int8 ({int8})", "onnx", f"onnx/model_qint8_{int8}.onnx"),
            ("sentence-transformers openvino", "openvino", ""),
            ("sentence-transformers openvino int8 (static)", "openvino", "openvino/openvino_model_qint8_quantized.xml")]


def sentence_transformers_backends(model_dir: Path, long: list[str], tokens_long: int, gate: list[str],
                                   work: Path, logs: Path) -> dict:
    """ST's own ONNX and OpenVINO backends (and their exports) in .venv-st; skipped where it is absent."""
    python = ST_VENV / "bin" / "python"
    if not python.exists():
        return {"sentence-transformers onnx / openvino": {"error": "no .venv-st (make peers-st)"}}
    folder = _st_model_copy(model_dir, work, python, logs)
    runs = {}
    for label, backend, file in st_backends():
        if file and not (folder / file).exists():
            runs[label] = {"error": f"its export failed; see {logs / f'st-exports-{work.name}.log'}"}
            continue
        out = work / f"{backend}-{Path(file).stem or 'default'}.npy"
        done = subprocess.run([str(python), "-c", ST_PEER_SCRIPT, str(folder), backend, file, str(out)],
                              input=json.dumps([long, gate]), capture_output=True, text=True, timeout=900,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if done.returncode != 0:
            runs[label] = {"error": done.stderr.strip().splitlines()[-1][:200] if done.stderr else "failed"}
            continue
        seconds = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
        runs[label] = {"tokens_per_s": len(long) * tokens_long / seconds, **({"vectors": np.load(out)} if gate else {})}
    return runs


def _onnx_int8_config() -> str:
    """ST's ONNX int8 export for this CPU: its avx512_vnni config where the CPU has VNNI, else avx2."""
    from trident import cpu

    return "avx512_vnni" if cpu.has_any(cpu.cpu_flags(), cpu.VNNI_FLAGS) else "avx2"


def _st_model_copy(model_dir: Path, work: Path, python: Path, logs: Path) -> Path:
    """The checkpoint with ST's own exports beside it: onnx/ (plain, O1-O4, int8) and openvino/ (plain, static
    int8 calibrated on builder/calibration.py's texts, read from a local CSV: no hub dataset)."""
    import csv
    import shutil

    from builder.calibration import CALIBRATION_TEXTS

    folder = work / "st-model"
    if (folder / ST_EXPORTS_DONE).exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(model_dir, folder)
    calibration = work / "calibration"
    calibration.mkdir(parents=True, exist_ok=True)
    with (calibration / "train.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["sentence"], *[[text] for text in CALIBRATION_TEXTS]])
    script = f'''
from sentence_transformers import (SentenceTransformer, export_dynamic_quantized_onnx_model,
                                   export_optimized_onnx_model, export_static_quantized_openvino_model)
folder = {str(folder)!r}
onnx = SentenceTransformer(folder, device="cpu", backend="onnx")
onnx.save_pretrained(folder)
export_dynamic_quantized_onnx_model(onnx, {_onnx_int8_config()!r}, folder)
for level in ("O1", "O2", "O3", "O4"):
    try:
        export_optimized_onnx_model(onnx, level, folder)
    except Exception as exc:  # one level that fails leaves the others
        print(level, "failed:", exc)
ov = SentenceTransformer(folder, device="cpu", backend="openvino")
ov.save_pretrained(folder)
from optimum.intel import OVQuantizationConfig
export_static_quantized_openvino_model(ov, OVQuantizationConfig(num_samples={len(CALIBRATION_TEXTS)}), folder,
                                       dataset_name={str(calibration)!r}, dataset_config_name="default",
                                       dataset_split="train", column_name="sentence")
'''
    with (logs / f"st-exports-{work.name}.log").open("wb") as log:
        subprocess.run([str(python), "-c", script], check=False, timeout=1800, stdout=log, stderr=subprocess.STDOUT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    (folder / ST_EXPORTS_DONE).touch()
    return folder


# --- the table --------------------------------------------------------------------------------------------


def precision_table(model_dir: Path, name: str, long: list[str], tokens_long: int, results: dict, seconds: float,
                    out: Path, logs: Path, judged_on: dict | None = None, concurrency: int = 8) -> dict:
    """Every contender on `model_dir`. `judged_on`: the table of a model with real weights whose passing
    configurations count here (this model's weights are random: speed only, no vectors compared)."""
    from builder.gate_texts import gate_texts

    gate = [] if judged_on else gate_texts()
    report: dict = {"model": name, "cpu": cpu_report(), "config": _shape(model_dir), "concurrency": concurrency,
                    "seconds": seconds, "in_process_texts": len(long), "tokens_long": tokens_long}
    print(f"... precision table of {name} on {report['cpu']['name']} ({report['cpu']['kind']}: "
          f"{' '.join(report['cpu']['relevant_flags'])}), load {report['cpu']['load']}", flush=True)
    threads = report["cpu"]["cores"]
    contenders: dict[str, dict] = {}
    contenders.update(sentence_transformers_in_process(model_dir, long, tokens_long, gate))
    repositories, refused = variant_repositories(model_dir, name)
    for variant_name, reason in refused.items():
        contenders[f"trident {variant_name}"] = {"error": reason}
    for variant_name, repository in repositories.items():
        print(f"... Trident {variant_name}", flush=True)
        row = over_http(repository, name, long, tokens_long, seconds, gate, logs, concurrency)
        row["engine"] = engine_alone(repository, name, model_dir, 256, threads)
        contenders[f"trident {variant_name}"] = row
    print("... sentence-transformers backends", flush=True)
    contenders.update(sentence_transformers_backends(model_dir, long, tokens_long, gate, out / f"st-{name}", logs))
    infinity = results.get("infinity", {})
    if "tokens" in infinity and not judged_on:
        engine = infinity["engine"]["tokens"]
        contenders[f"infinity-emb {engine}"] = {"tokens_per_s": infinity["tokens"]["tokens_per_s"]}
    ceilings = matmul_ceilings(threads)
    report["matmul_ceilings"] = ceilings
    if gate:
        reference = contenders["sentence-transformers fp32"]["vectors"]
        for row in contenders.values():
            if "vectors" in row:
                vectors = row.pop("vectors")
                row["min_cosine"] = cosine_min(vectors, reference)
                row["recall_at_10"] = recall_at_10(vectors, reference)
    report["contenders"] = contenders
    accepted = passing(judged_on["contenders"]) if judged_on else passing(contenders)
    report["counted"] = sorted(accepted)
    report["targets"] = targets(contenders, ceilings, accepted)
    print(render(report), flush=True)
    return report


def _shape(model_dir: Path) -> dict:
    config = json.loads((model_dir / "config.json").read_text())
    return {key: config[key] for key in BERT_BASE}


def passing(contenders: dict[str, dict]) -> set[str]:
    """The contenders that count: they ran, within the precision gate's cosine and recall@10 to float32
    (infinity-emb's float32 engines, not measured: taken as passing)."""
    from trident.gate import TOLERANCES

    gate = TOLERANCES["reduced"]
    return {label for label, row in contenders.items() if "tokens_per_s" in row
            and row.get("min_cosine", 1.0) >= gate.min_cosine and row.get("recall_at_10", 1.0) >= gate.min_recall}


def targets(contenders: dict[str, dict], ceilings: dict[str, float], accepted: set[str]) -> dict:
    """The issue's targets: the best Trident variant over HTTP against sentence-transformers' fastest
    configuration in-process (any dtype or backend that counts; its backends alone are shown beside) and against
    infinity-emb's best engine; the engine alone against the matmul ceiling of its own precision."""
    from trident.precision import variant

    def best(prefixes: tuple[str, ...]) -> str | None:
        ran = {k: v for k, v in contenders.items() if k.startswith(prefixes) and k in accepted and "tokens_per_s" in v}
        return max(ran, key=lambda k: ran[k]["tokens_per_s"], default=None)

    picks = {"trident": best(("trident ",)),
             "sentence_transformers": best(("sentence-transformers ",)),  # any dtype or backend that counts
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
    result["http_vs_engine"] = trident["tokens_per_s"] / trident["engine"]["tokens_per_s"]
    return result


def render(report: dict) -> str:
    cpu, shape = report["cpu"], report["config"]
    lines = [f"model: {report['model']} ({shape['num_hidden_layers']} layers, hidden {shape['hidden_size']}, "
             f"FFN {shape['intermediate_size']}); HTTP: 32 x {report['tokens_long']}-token inputs per request, "
             f"concurrency {report['concurrency']}, {report['seconds']:.0f} s; "
             f"in-process: {report['in_process_texts']} texts, batch 32",
             f"CPU: {cpu['name']}, {cpu['cores']} cores, kind {cpu['kind']}, load {cpu['load']}",
             f"flags: {' '.join(cpu['relevant_flags'])}",
             f"{'contender':<46} {'tokens/s HTTP|in-proc':>22} {'engine tok/s':>13} {'engine GFLOP/s':>15} "
             f"{'min cos':>8} {'recall@10':>9}"]
    for name, row in report["contenders"].items():
        if "tokens_per_s" not in row:
            lines.append(f"{name:<46} {row.get('error', 'did not run')}")
            continue
        engine = row.get("engine", {})
        lines.append(f"{name:<46} {row['tokens_per_s']:>22,.0f} {engine.get('tokens_per_s', 0):>13,.0f} "
                     f"{engine.get('flops', 0) / 1e9:>15,.1f} {row.get('min_cosine', float('nan')):>8.5f} "
                     f"{row.get('recall_at_10', float('nan')):>9.4f}")
    lines.append("matmul ceilings (GFLOP/s, int8 GOP/s): " + ", ".join(
        f"{k} {v / 1e9:,.0f}" for k, v in report["matmul_ceilings"].items()))
    t = report["targets"]
    nan = float("nan")
    lines.append(f"targets: best Trident ({t.get('trident')}) over HTTP vs {t.get('sentence_transformers')} "
                 f"in-process: {t.get('vs_sentence_transformers', nan):.2f}x (target >= 1.3); vs {t.get('infinity')}: "
                 f"{t.get('vs_infinity', nan):.2f}x; engine alone at {t.get('engine_vs_ceiling', nan):.0%} "
                 f"of the {t.get('ceiling_precision')} matmul (>= 50%); HTTP at "
                 f"{t.get('http_vs_engine', nan):.0%} of its engine alone")
    lines.append(f"beside: vs {t.get('sentence_transformers_backend')} in-process: "
                 f"{t.get('vs_sentence_transformers_backend', nan):.2f}x")
    return "\n".join(lines)


def bench_models(model_dir: Path, long: list[str], tokens_long: int, results: dict, seconds: float, out: Path,
                 logs: Path, bert_base: bool = True) -> dict:
    """The default model's table, then (`bert_base`) the BERT-base-sized one's: 64 texts per in-process run (a
    quarter: its engine is ~8x the work), load phases of at least 30 s at concurrency 2 (one request executing,
    one tokenized and waiting: its float32 engines take 10-16 s per request, and 8 deep the last would wait
    minutes)."""
    from cli.models import DEFAULT_MODEL_NAME

    tables = {"default": precision_table(model_dir, DEFAULT_MODEL_NAME, long[:256], tokens_long, results, seconds,
                                         out, logs)}
    if bert_base:
        folder = bert_base_checkpoint(model_dir, out / "bert-base-random")
        tables["bert_base"] = precision_table(folder, "bert-base-random", long[:64], tokens_long, results,
                                              max(seconds, 30.0), out, logs, judged_on=tables["default"], concurrency=2)
    return tables


if __name__ == "__main__":  # the tables alone (no infinity-emb): .venv/bin/python bench/precision.py
    sys.path.insert(0, str(ROOT))
    from bench.run import effective_tokens, long_texts
    from cli.models import default_model_dir

    directory = default_model_dir()
    texts = long_texts(512)
    results_dir = ROOT / "bench" / "results"
    (results_dir / "logs").mkdir(parents=True, exist_ok=True)
    tables = bench_models(directory, texts, effective_tokens(directory, texts[:64], 256), {},
                          float(os.environ.get("BENCH_SECONDS", "15")), results_dir, results_dir / "logs",
                          bert_base=os.environ.get("BENCH_BERT_BASE", "1") == "1")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results_dir / f"precision-{stamp}.json").write_text(json.dumps(tables, indent=2, default=float))
