# Trident: `make serve` runs the stack, `make test` passes the tests. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8080

.PHONY: install serve test test-fast reference-venv fuzz soak lint docs bench loadtest peers peers-st clean gpu-pack gpu-dry-run

install: $(STAMP)

# torch first, alone: `torch==2.13.0` is the CPU build (an open range would pull a multi-GB CUDA one).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[build,dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/trident serve --port $(PORT)

# FlagEmbedding, BGE-M3's reference (tests/test_hybrid.py), in its own venv: FlagEmbedding 1.4.2 imports a
# transformers module that 5.x removed (transformers.modeling_attn_mask_utils), and its datasets wants numpy 2.
FLAG := .venv-flag
FLAG_STAMP := $(FLAG)/.installed-stamp
$(FLAG_STAMP):
	$(PYTHON) -m venv $(FLAG)
	$(FLAG)/bin/python -m pip install -q --upgrade pip
	$(FLAG)/bin/python -m pip install -q torch==2.13.0
	$(FLAG)/bin/python -m pip install -q "FlagEmbedding==1.4.2" "transformers==4.57.6" "sentence-transformers==5.7.0"
	touch $(FLAG_STAMP)

reference-venv: $(FLAG_STAMP)

# FLAG_STAMP is defined above: make expands a rule's prerequisites where it reads the rule.
test: $(STAMP) $(FLAG_STAMP)
	$(BIN)/python -m pytest -q tests

# The fast tier: tests/unit, no tritonserver and no model build (the gateway against testkit/fake_triton.py).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# Benchmarks (not part of `make test`): Trident vs sentence-transformers and infinity-emb, one run.
BENCH_STAMP := $(VENV)/.bench-stamp
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[build,dev,bench]'
	touch $(BENCH_STAMP)

# infinity-emb in its own venv (it needs numpy<2, sentence-transformers<4, transformers<=5.0).
# infinity-emb with its torch and optimum (ONNX Runtime) engines; old optimum/datasets/pyarrow pins keep numpy < 2.
peers:
	( test -x .venv-peers/bin/infinity_emb && .venv-peers/bin/python -c "import optimum.onnxruntime" 2>/dev/null ) \
	|| ( $(PYTHON) -m venv .venv-peers \
	  && .venv-peers/bin/python -m pip install -q --upgrade pip \
	  && .venv-peers/bin/python -m pip install -q torch==2.13.0 \
	  && .venv-peers/bin/python -m pip install -q "infinity-emb[server]==0.0.78" "numpy<2" \
	     "sentence-transformers<4" "transformers<=5.0" "optimum[onnxruntime]==1.17.1" "datasets==2.18.0" \
	     "pyarrow==15.0.2" "fsspec==2024.2.0" ) || echo "infinity-emb could not be installed: bench runs without it"

# sentence-transformers' own ONNX and OpenVINO backends (optimum-onnx, optimum-intel) need transformers < 5: their venv.
# `datasets` reads the OpenVINO int8 export's calibration texts from a local CSV (huggingface-hub < 1.0 for transformers 4).
peers-st:
	( test -x .venv-st/bin/python && .venv-st/bin/python -c "import optimum.intel, optimum.onnxruntime, datasets" 2>/dev/null ) \
	|| ( $(PYTHON) -m venv .venv-st \
	  && .venv-st/bin/python -m pip install -q --upgrade pip \
	  && .venv-st/bin/python -m pip install -q torch==2.13.0 \
	  && .venv-st/bin/python -m pip install -q "sentence-transformers[onnx,openvino]==5.7.0" "optimum-intel==1.27.0" \
	     "optimum-onnx==0.1.0" "optimum==2.1.0" "transformers==4.57.6" "openvino==2026.4.1" \
	     "datasets==4.0.0" "huggingface-hub<1.0" ) \
	|| echo "sentence-transformers' onnx / openvino backends could not be installed: bench runs without them"

bench: $(BENCH_STAMP) peers peers-st
	$(BIN)/python bench/run.py

loadtest: $(BENCH_STAMP)
	$(BIN)/python loadtest/run.py --run-time 60s

# The schema-driven fuzz run of `make test`, with many more examples per route (a few minutes).
fuzz: $(STAMP)
	TRIDENT_FUZZ_EXAMPLES=$${TRIDENT_FUZZ_EXAMPLES:-1000} $(BIN)/python -m pytest -q tests/unit/test_fuzz.py

# The longer bounded reliability run (a few minutes): 2-minute overload with RSS, SIGKILL cycles, stub crash,
# SIGTERM drain; prints requests sent, errors by kind, wrong answers, peak RSS and recovery times as JSON.
soak: $(STAMP)
	$(BIN)/python -m soak.run $(SOAK_ARGS)

# First light on a GPU (docs/gpu-engines.md): the folder a bare GPU machine needs (< 64 MiB, PyPI needed here, ~3 minutes),
# and the same run on this CPU at toy sizes. On the GPU machine: bash bench/gpu_first_light.sh
gpu-pack: $(STAMP)
	$(BIN)/python bench/first_light.py pack
gpu-dry-run: $(STAMP)
	bash bench/gpu_first_light.sh --dry-run

# `python -m ruff`: works whether or not pip wrote a `ruff` script into .venv/bin (a fresh clone had none).
lint: $(STAMP)
	$(BIN)/python -m ruff check .

# The reference docs (docs/, mkdocs.yml) into site/; `make test` builds them too (tests/unit/test_docs.py).
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict

clean:
	rm -rf .trident .pytest_cache .ruff_cache site
