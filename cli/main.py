"""The `trident` command: `build` a model repository, `serve` it (Triton + gateway)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from builder.build import BuildOptions, build, summary
from builder.config_file import fetched_checkpoint, load_build_config
from builder.errors import BuildError
from builder.repository import PlacementError, host_step_instances, served_copy
from cli.gpus import gpu_list
from cli.models import DEFAULT_MODEL_NAME, default_model_dir
from cli.ports import DEFAULT_TRITON_PORTS, PortInUseError, triton_ports
from cli.procfs import host_cores
from cli.refine import start_refinements
from cli.serve import ModelArg, default_models, prepare_model
from cli.supervisor import DrainingServer, Supervisor, gateway_config, make_server
from cli.triton_server import TritonStartError
from cli.workers import GatewayWorkers, WorkerPlan, default_workers, reserve_port
from gateway.app import create_app
from gateway.logs import configure_logging
from gateway.settings import GatewaySettings
from trident import __version__
from trident.engines import DEFAULT_ENGINE, ENGINE_NAMES, ENGINES
from trident.gate import TOLERANCES
from trident.precision import PRECISIONS, VARIANT_NAMES
from trident.spec import POOLINGS, QUANTIZATIONS
from trident.tasks import TASK_NAMES

GATEWAY_DEFAULTS = GatewaySettings()  # each gateway flag's default is written once, in gateway/settings.py


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASK_NAMES,
                        help="override the task detected from config.json")
    parser.add_argument("--pooling", choices=POOLINGS, help="override the pooling")
    parser.add_argument("--max-length", type=int, help="override the maximum tokens per input")
    parser.add_argument("--max-num-tokens", type=int, default=16384, help="token budget of one engine batch")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow checkpoints that ship their own model code (never the default)")
    parser.add_argument("--engine-instances", type=int, metavar="N",
                        help="Triton instances of the engine model (default: "
                             + ", ".join(f"{kind.instances} for {kind.name}" for kind in ENGINES.values())
                             + "; on CPU each instance gets cores/N threads)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="no_quant",
                        help="int8: --precision onnxruntime-int8 (ONNX Runtime dynamic int8 on CPU); "
                             "fp8: causal models on the torch engine, FP8 GPUs (a --config file's own wins)")
    parser.add_argument("--precision", choices=[*PRECISIONS, *VARIANT_NAMES], metavar="PRECISION",
                        help="the CPU engine's variant: auto (default, or $TRIDENT_PRECISION): the fastest this CPU "
                             f"runs that passes the gate ({TOLERANCES['reduced'].describe()} to float32); fp32, "
                             "bf16, int8: the fastest of that precision; or a variant: "
                             f"{', '.join(VARIANT_NAMES)}. One the CPU lacks is refused")
    parser.add_argument("--engine", choices=ENGINE_NAMES, default=DEFAULT_ENGINE,
                        help="; ".join(f"{kind.name}: {kind.about}" for kind in ENGINES.values()))


def _add_gateway_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="gateway address (default loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="gateway port")
    parser.add_argument("--api-key", default=os.environ.get("TRIDENT_API_KEY", GATEWAY_DEFAULTS.api_key),
                        help="require Authorization: Bearer KEY (env TRIDENT_API_KEY)")
    parser.add_argument("--auto-truncate", action="store_true",
                        help="TEI routes truncate over-long inputs unless the request says otherwise")
    parser.add_argument("--chunk-long-inputs", action="store_true",
                        help="mean-pooled models embed inputs past their maximum in windows (the mean over all their "
                             "tokens) unless the request sends chunk_long_inputs=false")
    parser.add_argument("--max-client-batch-size", type=int, default=GATEWAY_DEFAULTS.max_client_batch_size,
                        help="inputs per request")
    parser.add_argument("--max-concurrent-requests", type=int, default=GATEWAY_DEFAULTS.max_concurrent_requests,
                        help="requests in flight")
    parser.add_argument("--max-payload-bytes", type=int, default=GATEWAY_DEFAULTS.max_payload_bytes,
                        help="request body limit")
    parser.add_argument("--triton-batch-size", type=int, default=GATEWAY_DEFAULTS.triton_batch_size,
                        help="inputs per Triton sub-request")
    parser.add_argument("--request-timeout", type=float, default=GATEWAY_DEFAULTS.request_timeout_s,
                        help="deadline of each Triton call, s")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="on SIGTERM, seconds to let admitted requests finish (new ones get 503)")
    parser.add_argument("--default-model", default=GATEWAY_DEFAULTS.default_model,
                        help="model used when a request names none")
    parser.add_argument("--log-format", choices=["json", "text"], default="json",
                        help="gateway logs: one JSON object per line (default) or plain text")
    parser.add_argument("--workers", type=_at_least_one, metavar="N",
                        help="gateway processes on the one port (default: one per 2 cores, at most 8; 1 runs the "
                             "gateway inside the serve process)")
    parser.add_argument("--bulk-threshold", type=_at_least_one, default=GATEWAY_DEFAULTS.bulk_threshold, metavar="N",
                        help="a request with more inputs than N that names no priority (body `priority`, header "
                             "x-trident-priority) runs as bulk: behind interactive requests, in the bulk lane")
    parser.add_argument("--cache-size", type=_not_negative, default=GATEWAY_DEFAULTS.cache_size_mib, metavar="MiB",
                        help="the response cache: each input's answer kept in memory, all gateway workers together "
                             "(0: off)")


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="trident", description=__doc__)
    root.add_argument("--version", action="version", version=f"trident {__version__}")
    commands = root.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="checkpoint -> checked engine -> Triton model repository")
    build.add_argument("model", nargs="?",
                       help="local checkpoint folder or Hugging Face hub id (default: all-MiniLM-L6-v2)")
    build.add_argument("--out", type=Path, required=True, help="model repository folder to write into")
    build.add_argument("--name", help="served model name (default: the folder or repo name)")
    build.add_argument("--revision", help="hub revision")
    build.add_argument("--config", type=Path, metavar="FILE",
                       help="BEI-style YAML (trt_llm.build / trt_llm.runtime) naming the checkpoint and settings")
    _add_build_options(build)

    serve = commands.add_parser("serve", help="run Triton and the HTTP gateway")
    serve.add_argument("--model", action="append", default=[], metavar="[NAME=]MODEL",
                       help="checkpoint to build (or reuse) and serve; repeat for several models")
    serve.add_argument("--repository", action="append", type=Path, default=[],
                       help="an already built model repository; repeatable. With --triton-url, Triton is not "
                            "started: the gateway only reads tokenizers from it (/tokenize, /decode)")
    serve.add_argument("--triton-url", action="append", default=[], metavar="HOST:PORT",
                       help="use a running Triton (gRPC) instead of starting one; repeat to spread requests "
                            "over several, a dead one is skipped until it answers again")
    serve.add_argument("--triton-metrics-url", metavar="URL",
                       help="Triton's Prometheus endpoint to include in GET /metrics "
                            "(default: the started Triton's; none with --triton-url)")
    for name, default in DEFAULT_TRITON_PORTS.items():
        serve.add_argument(f"--triton-{name}-port", type=int, metavar="PORT",
                           help=f"the started tritonserver's {name} port (default {default} if free, else a free one)")
    serve.add_argument("--triton-log", type=Path, metavar="FILE",
                       help="append the started tritonserver's log to FILE, kept after exit (default: in its work "
                            "folder, removed at exit)")
    _add_placement_options(serve)
    _add_build_options(serve)
    _add_gateway_options(serve)

    place = commands.add_parser("place", help="a built repository as this host serves it, for a tritonserver "
                                "started by hand (compose, Kubernetes)")
    place.add_argument("repository", type=Path, help="a model repository written by `trident build`")
    place.add_argument("--out", type=Path, required=True,
                       help="folder to write (replaced): links to the build, configs placed for this host")
    _add_placement_options(place)
    return root


def _add_placement_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", type=gpu_list, metavar="all|0,1,..",
                        help="the GPUs a GPU engine (--engine torch or tensorrt) runs on: one instance group per GPU, "
                             "the engine's instance count on each (default: Triton's placement of the build)")
    parser.add_argument("--step-instances", type=_at_least_one, metavar="N",
                        help="Triton instances of each tokenizer / ids / postprocess step of the started Triton "
                             "(default: one per 4 cores, at most 4)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        configure_logging(args.log_format)
    else:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("trident").setLevel(logging.INFO)
    try:
        if args.command == "build":
            return run_build(args)
        if args.command == "place":
            return run_place(args)
        return run_serve(args)
    except (BuildError, PortInUseError, TritonStartError, PlacementError) as exc:
        print(f"trident: error: {exc}", file=sys.stderr)
        return 2


def _build_options(args: argparse.Namespace) -> dict[str, object]:
    return {"task": args.task, "pooling": args.pooling, "max_length": args.max_length,
            "max_num_tokens": args.max_num_tokens, "trust_remote_code": args.trust_remote_code,
            "engine": args.engine, "quantization": args.quantization, "engine_instances": args.engine_instances,
            "precision": args.precision}


def run_build(args: argparse.Namespace) -> int:
    if args.config is not None:
        return run_build_config(args)
    if args.model is None:
        args.model, args.name = str(default_model_dir()), args.name or DEFAULT_MODEL_NAME
    result = build(BuildOptions(model=args.model, out=args.out, name=args.name, revision=args.revision,
                                **_build_options(args)), progress=lambda msg: print(f"... {msg}", flush=True))
    print(summary(result))
    return 0


def run_build_config(args: argparse.Namespace) -> int:
    if args.model is not None:
        raise BuildError("give either a checkpoint or --config, not both")
    config = load_build_config(args.config)
    extra = {k: v for k, v in _build_options(args).items()
             if k not in ("max_num_tokens", "quantization")}  # the file's win
    with fetched_checkpoint(config) as model:
        result = build(config.build_options(model, args.out, args.name, **extra),
                       progress=lambda msg: print(f"... {msg}", flush=True))
    print(summary(result))
    return 0


def run_place(args: argparse.Namespace) -> int:
    if not args.repository.is_dir():
        raise PlacementError(f"model repository {args.repository} is not a folder")
    step_instances = args.step_instances or host_step_instances(host_cores())
    served_copy(args.repository, args.out, step_instances, args.gpus)
    print(f"{args.out}: {args.repository} placed for this host ({step_instances} instance(s) per cheap step"
          f"{', engines on GPU(s) ' + ','.join(map(str, args.gpus)) if args.gpus else ''})")
    return 0


def _raise_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_serve(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    cores = host_cores()
    workers = args.workers or default_workers(cores)
    step_instances = args.step_instances or host_step_instances(cores)
    logging.getLogger("trident.serve").info("%d core(s): %d gateway worker(s), %d instance(s) per tokenizer / "
                                            "postprocess step", cores, workers, step_instances)
    reserved = reserve_port(args.host, args.port) if workers > 1 else []  # a port in use fails now
    port = reserved[0].getsockname()[1] if reserved else args.port
    supervisor = None
    refinements = []
    triton_urls = list(args.triton_url)
    triton_server_id = None  # set when we start Triton: the gateway then talks to that one only
    repositories = list(args.repository)
    metrics_url = args.triton_metrics_url
    try:
        if not triton_urls:
            # Ports first: a port asked for and taken fails now, not after minutes of building.
            ports = triton_ports({"http": args.triton_http_port, "grpc": args.triton_grpc_port,
                                  "metrics": args.triton_metrics_port})
            models = [ModelArg.parse(m) for m in args.model] or ([] if args.repository else default_models())
            progress = logging.getLogger("trident.serve").info  # JSON lines too, with --log-format json
            built = [prepare_model(m, _build_options(args), progress, defer_variants=True) for m in models]
            repositories += built
            server = make_server(repositories, ports["http"], ports["grpc"], ports["metrics"], step_instances,
                                 args.gpus, args.triton_log)
            supervisor = Supervisor(server)
            progress(f"starting tritonserver {server.server_id} (gRPC {server.url}, HTTP {server.http_port}, "
                     f"metrics {server.metrics_port}; log {server.log_path})")
            chosen = frozenset(name for name in ports if getattr(args, f"triton_{name}_port") is None)
            supervisor.start(rebind=chosen)
            refinements = start_refinements(built, _build_options(args))  # the variants left for later
            triton_urls, triton_server_id = [server.url], server.server_id
            metrics_url = metrics_url or server.metrics_url
        settings = GatewaySettings(
            triton_urls=triton_urls, max_client_batch_size=args.max_client_batch_size,
            triton_batch_size=args.triton_batch_size, max_payload_bytes=args.max_payload_bytes,
            max_concurrent_requests=args.max_concurrent_requests, request_timeout_s=args.request_timeout,
            auto_truncate=args.auto_truncate, chunk_long_inputs=args.chunk_long_inputs, api_key=args.api_key,
            default_model=args.default_model,
            triton_metrics_url=metrics_url, repositories=repositories, triton_server_id=triton_server_id,
            bulk_threshold=args.bulk_threshold, cache_size_mib=args.cache_size, workers=workers,
        )
        logging.getLogger("trident.serve").info("gateway on http://%s:%d", args.host, port)
        if workers == 1:
            app = create_app(settings)
            DrainingServer(gateway_config(app, args.host, port), app.state.admission, args.drain_timeout).run()
        else:
            serve_workers(WorkerPlan(settings, args.host, port, workers, args.drain_timeout, args.log_format))
    except KeyboardInterrupt:
        pass
    finally:
        for refinement in refinements:
            refinement.stop()
        if supervisor is not None:
            supervisor.stop()
            shutil.rmtree(supervisor.server.work_dir, ignore_errors=True)  # its log and served copy: ours alone
        for sock in reserved:
            sock.close()
    return 0


def serve_workers(plan: WorkerPlan) -> None:
    """`--workers N`: the gateway in N processes until SIGTERM / SIGINT has drained them all."""
    run_dir = Path(tempfile.mkdtemp(prefix="trident-serve-"))
    try:
        pool = GatewayWorkers(plan, run_dir)
        pool.start()
        pool.run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
