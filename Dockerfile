# syntax=docker/dockerfile:1
# Trident images. Targets:
#   gateway  - the HTTP gateway alone (talks gRPC to a Triton elsewhere), non-root
#   triton   - NGC Triton with Trident's Python-backend dependencies installed
#   builder  - turns a checkpoint into a Triton model repository (torch CPU, one-shot)
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3

FROM python:3.11.7-slim-bookworm AS gateway
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY trident trident
COPY gateway gateway
COPY builder builder
COPY model_repository model_repository
RUN pip install -c constraints.txt . && useradd --system --uid 10001 trident
USER trident
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/health').status != 200)"
ENTRYPOINT ["trident", "serve", "--host", "0.0.0.0", "--port", "8080"]

FROM ${TRITON_IMAGE} AS triton
WORKDIR /opt/trident
COPY pyproject.toml constraints.txt README.md ./
COPY trident trident
COPY gateway gateway
COPY builder builder
COPY model_repository model_repository
# The Python backend imports trident.stages; numpy < 2 for the backend stub.
RUN pip install --no-cache-dir -c constraints.txt . "numpy<2"

FROM python:3.11.7-slim-bookworm AS builder
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY trident trident
COPY gateway gateway
COPY builder builder
COPY model_repository model_repository
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c constraints.txt ".[build]"
ENTRYPOINT ["trident", "build"]
