"""Where OpenVINO int8 (NNCF) loses retrieval quality, and which configuration keeps it.

Every configuration is an NNCF post-training quantization of the build's float32 `model.onnx`, calibrated on
builder/calibration.py's texts (never on the gate's), judged by the precision gate (trident.gate, `reduced`:
min cosine >= 0.99 and recall@10 >= 0.95 to ONNX Runtime float32 on the parity + gate texts) and timed like the
build times variants (builder/variants.py `speed_ms`, 16 x 128 tokens, best of 3) and, with --tokens, like
bench/precision.py times the engine alone (32 x 256 tokens, tokens/s). Each int8 model runs with the rest of the
graph in float32 (`f32`, what the openvino-int8 variant ran) and in bf16 (`bf16`: int8 MatMuls, bf16 elsewhere,
where the CPU has avx512_bf16 / amx_bf16).

Experiments (`--experiments`, comma-separated; default all but `accuracy`):
  baseline   the openvino-int8 variant as it was (SmoothQuant alpha 0.5, MIXED preset)
  roles-off  every MatMul of one role (q/k/v, attention scores, attention x values, attention output, FFN up,
             FFN down) left in float, the rest int8
  roles-only only one role int8
  layers-off every MatMul of one layer left in float;  layers-only  only one layer int8
  alpha      SmoothQuant alpha sweep (-1: off)
  preset     PERFORMANCE (symmetric activations) against MIXED;  long  calibration texts joined into long inputs
  accuracy[:drop]  nncf.quantize_with_accuracy_control, validated on the calibration texts (min cosine to
             float32 may drop by `drop`, default 0.005)
  ort-dynamic / ort-static  ONNX Runtime int8 of every weight MatMul: dynamic (builder/int8.py's, u8 x s8 per
             channel) / static QDQ calibrated on the calibration texts (per-channel weights)
  config=... one configuration: ignore=<role|layer:N|role@N|name>+...;alpha=<a>;preset=<mixed|performance>;
             long=1;ranges=<nncf RangeEstimatorParametersSet name, e.g. mean_quantile>;hints=f32+bf16;
             dq=<group>: the ignored MatMuls get int8 weights and OpenVINO's dynamic activation quantization
  wc:<mode>:<group>:<f32|bf16>  every MatMul weight-compressed (nncf.compress_weights mode), dynamic quantization

Usage: .venv/bin/python bench/int8_sensitivity.py --build <a trident build of the model> [--experiments ...]
       [--tokens] ; rows go to stdout and to bench/results/int8-sensitivity-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("qkv", "attn_scores", "attn_values", "attn_out", "ffn_up", "ffn_down")
EXPERIMENTS = ("baseline", "roles-off", "roles-only", "layers-off", "layers-only", "alpha", "preset", "long")
ALPHAS = (-1.0, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95)


def variant_precision(name: str) -> str:
    from trident.precision import variant

    return variant(name).precision


def matmuls(onnx_file: Path, layers: int) -> list[dict]:
    """The graph's MatMuls in order, each with its role and layer (names as OpenVINO reads them from ONNX)."""
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    nodes = [node for node in model.graph.node if node.op_type == "MatMul"]
    rows = []
    for index, node in enumerate(nodes):
        weight = shapes.get(node.input[1])
        source = producers.get(node.input[0])
        if weight is None:
            role = "attn_values" if source is not None and source.op_type == "Softmax" else "attn_scores"
        elif weight[0] < weight[1]:
            role = "ffn_up"
        elif weight[0] > weight[1]:
            role = "ffn_down"
        else:
            role = "attn_out" if source is not None and source.op_type == "Reshape" else "qkv"
        rows.append({"name": node.name, "role": role, "layer": index * layers // len(nodes)})
    return rows


def select(rows: list[dict], what: str) -> list[str]:
    """MatMul names by `role`, `layer:N`, `role@N` (that role in layer N) or exact name."""
    if "@" in what:
        role, layer = what.split("@")
        return [r["name"] for r in rows if r["role"] == role and r["layer"] == int(layer)]
    if what in ROLES:
        return [r["name"] for r in rows if r["role"] == what]
    if what.startswith("layer:"):
        return [r["name"] for r in rows if r["layer"] == int(what.split(":")[1])]
    return [r["name"] for r in rows if r["name"] == what]


def calibration_feeds(model_dir: Path, spec, input_names: set[str], long: bool) -> list[dict]:
    """One feed per calibration text (builder/openvino_int8.py's way); `long`: also the texts joined 8 and 24 at a
    time, so activation ranges see inputs as long as the gate's (still none of the gate's texts)."""
    from transformers import AutoTokenizer

    from builder.calibration import CALIBRATION_TEXTS
    from builder.parity import tokenize
    from trident.batching import padded_feeds

    texts = list(CALIBRATION_TEXTS)
    if long:
        texts += [" ".join(CALIBRATION_TEXTS[i:i + 8]) for i in range(0, len(CALIBRATION_TEXTS), 8)]
        texts += [" ".join(CALIBRATION_TEXTS[i:i + 24]) for i in range(0, len(CALIBRATION_TEXTS), 24)]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    ids, types = tokenize(tokenizer, spec, texts)
    return [padded_feeds([row], None if types is None else [types[i]], input_names, spec.pad_token_id,
                         spec.padding_side, None) for i, row in enumerate(ids)]


def quantize(onnx_file: Path, feeds: list[dict], target: Path, ignore: list[str], alpha: float, preset: str,
             accuracy: dict | None = None, ranges: str = "") -> None:
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(onnx_file))
    params = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))
    if ranges:  # activations' range estimator, e.g. MEAN_QUANTILE (clips outliers) instead of the min / max
        params.activations_range_estimator_params = getattr(RangeEstimatorParametersSet, ranges.upper())
    kwargs = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(feeds),
              "preset": nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
              "ignored_scope": nncf.IgnoredScope(names=ignore) if ignore else None}
    if accuracy is None:
        quantized = nncf.quantize(model, nncf.Dataset(feeds), advanced_parameters=params, **kwargs)
    else:
        quantized = nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(feeds), nncf.Dataset(accuracy["feeds"]), accuracy["fn"], max_drop=accuracy["drop"],
            advanced_quantization_parameters=params, **kwargs)
    target.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target), compress_to_fp16=False)


def accuracy_validation(onnx_file: Path, feeds: list[dict], drop: float) -> dict:
    """NNCF's validation: min cosine of the calibration texts' embeddings to float32's (not the gate's texts)."""
    import openvino as ov

    reference_model = ov.Core().compile_model(str(onnx_file), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    reference = [np.asarray(reference_model(feed)[reference_model.output("embeddings")])[0] for feed in feeds]

    def validate(compiled, data) -> float:  # NNCF ranks the quantizers by its own per-sample outputs
        values = []
        for want, feed in zip(reference, data, strict=True):
            got = np.asarray(compiled(feed)[compiled.output("embeddings")])[0]
            values.append(float(want @ got / (np.linalg.norm(want) * np.linalg.norm(got))))
        return float(min(values))

    return {"feeds": feeds, "fn": validate, "drop": drop}


class Bench:
    def __init__(self, build: Path, model_dir: Path, threads: int, tokens: bool) -> None:
        from builder.variants import _gate_inputs
        from trident.engines.onnxruntime import OnnxEngine
        from trident.spec import ModelSpec

        manifests = sorted(build.glob("*/manifest.json"))
        self.spec = ModelSpec.load(manifests[0])
        self.onnx = build / f"{self.spec.name}_engine" / "1" / "model.onnx"
        self.model_dir, self.threads, self.tokens = model_dir, threads, tokens
        self.keep = False  # --interleave: every engine stays open for the interleaved timing at the end
        self.engines: dict[str, object] = {}
        self.ids, self.types, self.label_texts, self.lists = _gate_inputs(model_dir, self.spec)
        self.expected = OnnxEngine(self.onnx, self.spec, threads, self.spec.pad_token_id).run(self.ids, self.types)
        config = json.loads((model_dir / "config.json").read_text())
        self.matmuls = matmuls(self.onnx, config["num_hidden_layers"])
        self.rows: list[dict] = []
        self.work = Path(tempfile.mkdtemp(prefix="int8-sensitivity-"))

    def measure(self, label: str, model: Path, precision: str, extra: dict, dq: int = 0) -> dict:
        import openvino as ov

        from trident.engines.openvino import OpenVinoEngine, compile_options

        engine = OpenVinoEngine(model, self.spec, precision, self.threads, self.spec.pad_token_id)
        if dq:
            core = ov.Core()
            engine.compiled = core.compile_model(core.read_model(str(model)), "CPU", {
                **compile_options(precision, self.threads), "DYNAMIC_QUANTIZATION_GROUP_SIZE": dq})
            engine.request = engine.compiled.create_infer_request()
        return self._judge(label, engine, precision, {**extra, "dq_group": dq})

    def bf16_ms(self) -> float:
        """openvino-bf16 timed again now, beside each row (the CPU may be shared: the ratio is paired)."""
        from builder.variants import speed_ms
        from trident.engines.openvino import OpenVinoEngine

        if not hasattr(self, "_bf16"):
            self._bf16 = OpenVinoEngine(self.onnx, self.spec, "bf16", self.threads, self.spec.pad_token_id)
        return speed_ms(self._bf16, self.spec)

    def _judge(self, label: str, engine, precision: str, extra: dict) -> dict:
        from bench.precision import engine_tokens_per_s
        from builder.variants import speed_ms
        from trident.gate import gate

        report = gate(self.expected, engine.run(self.ids, self.types), "reduced", logits=False,
                      label_texts=self.label_texts)
        row = {"label": label, "hint": precision, **extra, "ms": speed_ms(engine, self.spec),
               "min_cosine": report.min_cosine, "recall_at_10": report.recall_at_10,
               "worst_recall_at_10": report.worst_recall_at_10, "passed": report.passed}
        row["bf16_ms"] = self.bf16_ms()
        row["ms"] = min(row["ms"], speed_ms(engine, self.spec))  # before and after bf16's, the best
        row["vs_bf16"] = row["bf16_ms"] / row["ms"]
        if self.tokens:
            row["tokens_per_s"] = engine_tokens_per_s(engine, 256)
            row["bf16_tokens_per_s"] = engine_tokens_per_s(self._bf16, 256)
            row["tokens_vs_bf16"] = row["tokens_per_s"] / row["bf16_tokens_per_s"]
        if self.keep:
            self.engines[f"{label} [{precision}]"] = engine
        del engine
        self.rows.append(row)
        print(f"{label:<44} {precision:>5} {row['ms']:>8.1f} ms {row.get('vs_bf16', float('nan')):>5.2f}x "
              f"{row.get('tokens_per_s', float('nan')):>9,.0f} tok/s  min cos {row['min_cosine']:.5f}  "
              f"recall@10 {row['recall_at_10']:.4f} (worst {row['worst_recall_at_10']:.1f})  "
              f"{'PASS' if row['passed'] else 'fail'}", flush=True)
        return row

    def onnxruntime(self, label: str, static: bool) -> None:
        """ONNX Runtime int8 of every constant-weight MatMul, timed and gated like the OpenVINO rows."""
        import onnxruntime as ort

        from builder.int8 import matmul_groups, quantize_int8
        from trident.engines.onnxruntime import OnnxEngine

        target = self.work / label.replace(" ", "_") / "model.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        nodes = [name for names in matmul_groups(self.onnx).values() for name in names]
        started = time.perf_counter()
        if static:
            from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

            names = {i.name for i in ort.InferenceSession(str(self.onnx)).get_inputs()}
            feeds = calibration_feeds(self.model_dir, self.spec, names, long=True)

            class Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.rows = iter(feeds)

                def get_next(self):
                    return next(self.rows, None)

            quantize_static(self.onnx, target, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_quantize=nodes, op_types_to_quantize=["MatMul"])
        else:
            quantize_int8(self.onnx, target, nodes)
        engine = OnnxEngine(target, self.spec, self.threads, self.spec.pad_token_id)
        self._judge(label, engine, "int8", {"int8_matmuls": len(nodes), "quantize_s": time.perf_counter() - started})

    def weight_compressed(self, label: str, mode: str, group: int, hint: str) -> None:
        """nncf.compress_weights (int8 weights per output channel, no calibration) with OpenVINO's dynamic
        quantization of the activations (per token, in groups of `group` values; DYNAMIC_QUANTIZATION_GROUP_SIZE)
        at run time, so the MatMuls can run on int8 kernels without static activation ranges."""
        import nncf
        import openvino as ov

        from trident.engines.openvino import OpenVinoEngine, compile_options

        target = self.work / label.replace(" ", "_").replace("/", "_") / "model.xml"
        if not target.exists():
            model = nncf.compress_weights(ov.Core().read_model(str(self.onnx)),
                                          mode=getattr(nncf.CompressWeightsMode, mode.upper()))
            target.parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(model, str(target), compress_to_fp16=False)
        engine = OpenVinoEngine(target, self.spec, "bf16" if hint == "bf16" else "int8", self.threads,
                                self.spec.pad_token_id)
        options = {**compile_options("bf16" if hint == "bf16" else "int8", self.threads),
                   "DYNAMIC_QUANTIZATION_GROUP_SIZE": group}
        core = ov.Core()
        engine.compiled = core.compile_model(core.read_model(str(target)), "CPU", options)
        engine.request = engine.compiled.create_infer_request()
        self._judge(f"{label} dq{group}", engine, hint, {"mode": mode, "dq_group": group})

    def served(self, folder: Path) -> None:
        """A build's own variant, opened as the engine stage opens it (trident.precision.open_engine)."""
        from trident.precision import open_engine
        from trident.spec import ModelSpec

        spec = ModelSpec.load(folder.parent.parent / folder.parent.name.removesuffix("_engine") / "manifest.json")
        engine = open_engine(spec.variant, folder, self.spec, self.threads)
        self._judge(f"served {spec.variant}", engine, variant_precision(spec.variant), {"folder": str(folder)})

    def references(self) -> None:
        self.measure("openvino-bf16", self.onnx, "bf16", {})
        self.measure("openvino-fp32", self.onnx, "fp32", {})

    def int8(self, label: str, ignore: list[str] | None = None, alpha: float = 0.5, preset: str = "mixed",
             long: bool = False, accuracy_drop: float | None = None, hints: tuple[str, ...] = ("f32", "bf16"),
             ranges: str = "", dq: int = 0) -> None:
        import openvino as ov

        names = {name for port in ov.Core().read_model(str(self.onnx)).inputs for name in port.get_names()}
        feeds = calibration_feeds(self.model_dir, self.spec, names, long)
        accuracy = None if accuracy_drop is None else accuracy_validation(self.onnx, feeds, accuracy_drop)
        target = self.work / label.replace(" ", "_").replace("/", "_") / "model.xml"
        started = time.perf_counter()
        try:
            quantize(self.onnx, feeds, target, sorted(set(ignore or [])), alpha, preset, accuracy, ranges)
        except Exception as exc:  # a configuration NNCF refuses is a row of the table
            print(f"{label:<44} NNCF failed: {exc}", flush=True)
            self.rows.append({"label": label, "error": str(exc)[:300]})
            return
        if dq:  # the MatMuls left in float: int8 weights, activations quantized per token group at run time
            import nncf

            compressed = nncf.compress_weights(ov.Core().read_model(str(target)),
                                               mode=nncf.CompressWeightsMode.INT8_ASYM)
            ov.save_model(compressed, str(target.with_name("dq.xml")), compress_to_fp16=False)
            target = target.with_name("dq.xml")
        extra = {"ignored": len(set(ignore or [])), "int8_matmuls": self._int8_count(target), "alpha": alpha,
                 "preset": preset, "long_calibration": long, "ranges": ranges,
                 "quantize_s": time.perf_counter() - started}
        for hint in hints:
            self.measure(label, target, "int8" if hint == "f32" else "bf16", extra, dq)

    def _int8_count(self, xml: Path) -> int:
        """MatMuls whose activation input goes through a FakeQuantize (int8 at run time)."""
        import openvino as ov

        model = ov.Core().read_model(str(xml))
        count = 0
        for op in model.get_ordered_ops():
            if op.get_type_name() == "MatMul":
                sources = [op.input_value(i).get_node().get_type_name() for i in range(2)]
                count += "FakeQuantize" in sources
        return count


def run(bench: Bench, experiments: list[str]) -> None:
    everything = [r["name"] for r in bench.matmuls]
    layers = sorted({r["layer"] for r in bench.matmuls})
    bench.references()
    for experiment in experiments:
        if experiment == "baseline":
            bench.int8("baseline (alpha 0.5, mixed)")
        elif experiment == "roles-off":
            for role in ROLES:
                bench.int8(f"float: {role}", select(bench.matmuls, role))
        elif experiment == "roles-only":
            for role in ROLES:
                keep = set(select(bench.matmuls, role))
                bench.int8(f"int8 only: {role}", [n for n in everything if n not in keep])
        elif experiment == "layers-off":
            for layer in layers:
                bench.int8(f"float: layer {layer}", select(bench.matmuls, f"layer:{layer}"))
        elif experiment == "layers-only":
            for layer in layers:
                keep = set(select(bench.matmuls, f"layer:{layer}"))
                bench.int8(f"int8 only: layer {layer}", [n for n in everything if n not in keep])
        elif experiment == "alpha":
            for alpha in ALPHAS:
                bench.int8(f"alpha {alpha}", alpha=alpha)
        elif experiment == "preset":
            bench.int8("preset performance", preset="performance")
        elif experiment == "long":
            bench.int8("long calibration", long=True)
        elif experiment.startswith("accuracy"):
            drop = float(experiment.split(":")[1]) if ":" in experiment else 0.005
            bench.int8(f"accuracy control (max drop {drop})", accuracy_drop=drop)
        elif experiment.startswith("wc:"):  # wc:<mode>:<group>:<hint>, e.g. wc:int8_asym:32:bf16
            _, mode, group, hint = experiment.split(":")
            bench.weight_compressed(f"weights {mode}", mode, int(group), hint)
        elif experiment.startswith("served="):  # served=<a build's engine version folder>: its variant as served
            bench.served(Path(experiment.removeprefix("served=")))
        elif experiment in ("ort-dynamic", "ort-static"):
            bench.onnxruntime(experiment, static=experiment == "ort-static")
        elif experiment.startswith("config="):
            settings = dict(part.split("=", 1) for part in experiment.removeprefix("config=").split(";"))
            ignore = [n for what in settings.get("ignore", "").split("+") if what for n in select(bench.matmuls, what)]
            hints = tuple(settings.get("hints", "f32+bf16").split("+"))
            bench.int8(experiment.removeprefix("config="), ignore, float(settings.get("alpha", 0.5)),
                       settings.get("preset", "mixed"), settings.get("long", "0") == "1", hints=hints,
                       ranges=settings.get("ranges", ""), dq=int(settings.get("dq", 0)))
        else:
            raise SystemExit(f"unknown experiment {experiment!r}")


def interleaved(engines: dict[str, object], rounds: int, tokens: int = 256) -> dict[str, dict]:
    """Each engine in turn on one 32 x `tokens` batch, `rounds` times: on a shared CPU the best round of each is
    its speed with the least interference, and every engine saw the same interference."""
    sequences = [np.full(tokens, 1000, dtype=np.int64) for _ in range(32)]
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():
        engine.run(sequences)
    for _ in range(rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.run(sequences)
            seconds[name].append(time.perf_counter() - started)
    bf16 = next((min(v) for k, v in seconds.items() if k.startswith("openvino-bf16")), float("nan"))
    result = {}
    for name, runs in seconds.items():
        result[name] = {"best_s": min(runs), "median_s": float(np.median(runs)),
                        "tokens_per_s": 32 * tokens / min(runs), "vs_bf16": bf16 / min(runs)}
        print(f"{name:<70} best {min(runs) * 1000:7.1f} ms  median {np.median(runs) * 1000:7.1f} ms  "
              f"{32 * tokens / min(runs):>8,.0f} tok/s  {bf16 / min(runs):.2f}x bf16", flush=True)
    return result


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.precision import cpu_report
    from cli.models import default_model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, required=True, help="a trident build (repository) of the model")
    parser.add_argument("--model-dir", type=Path, default=None, help="the checkpoint (default: all-MiniLM-L6-v2)")
    parser.add_argument("--experiments", default=",".join(EXPERIMENTS))
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--tokens", action="store_true", help="also the engine alone, 32 x 256 tokens (slower)")
    parser.add_argument("--interleave", type=int, default=0,
                        help="then time every engine in turn on 32 x 256 tokens, this many rounds (a shared CPU)")
    args = parser.parse_args()
    logging.getLogger("nncf").setLevel(logging.WARNING)
    report = {"cpu": cpu_report(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "experiments": args.experiments}
    print(f"CPU {report['cpu']['name']} ({' '.join(report['cpu']['relevant_flags'])}), {args.threads} threads",
          flush=True)
    bench = Bench(args.build, args.model_dir or default_model_dir(), args.threads, args.tokens)
    report["matmuls"] = bench.matmuls
    bench.keep = args.interleave > 0
    try:
        run(bench, [e for e in args.experiments.split(",") if e])
        if args.interleave:
            report["interleaved"] = interleaved(bench.engines, args.interleave)
    finally:
        report["rows"] = bench.rows
        out = ROOT / "bench" / "results" / f"int8-sensitivity-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=float))
        print(f"-> {out}")
        import shutil

        shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
