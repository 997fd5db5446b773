# Two commands on a fresh machine: `make demo` and `make test`. Each bootstraps .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PKG_DIRS := xpuport ir lowering backends hw_profiles benchmarks conformance
# Strict editable installs link files one by one, so a new source file needs a reinstall:
# the stamp depends on the list of files, which changes only when one is added or removed.
SOURCES := $(sort $(shell find $(PKG_DIRS) -name '*.py' -o -name '*.toml' -o -name py.typed))
STAMP := $(VENV)/.xpuport-installed

.PHONY: demo test test-all lint bench bench-suite gpu-check browser rocm-toolchain clean FORCE

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) browser rocm-toolchain
	$(BIN)/python -m pytest -q

# The HTML report is checked in a real headless browser: Debian's chromium, installed once.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium could not be installed: the HTML report's browser test will skip"

# ROCm compile-only tests link real AMDGPU code objects: Debian's device-library bitcode and
# an ld.lld new enough for LLVM 22's code objects (lld-14 rejects them), installed once.
rocm-toolchain:
	@test -d /usr/lib/x86_64-linux-gnu/amdgcn/bitcode -a -x /usr/bin/ld.lld-22 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    rocm-device-libs lld-22 >/dev/null; } || \
	  echo "rocm-device-libs/lld-22 could not be installed: the ROCm compile tests will skip"

test-all: $(STAMP) browser rocm-toolchain
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check .
	# mypy reads the installed link tree: only there do ir/, lowering/... sit under xpuport/.
	$(BIN)/mypy build/__editable__.*/xpuport plugins/npusim/src/xpuport_npusim

bench: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests -k bench

# The CPU benchmark suite against onnxruntime and torch eager: tables in out/bench-cpu/.
bench-suite: $(STAMP)
	$(BIN)/xpuport bench --suite --backend cpu --vs onnxruntime,torch --out out/bench-cpu

# On a machine with an NVIDIA GPU, one command: the GPU tests, the cuda conformance run, and
# the encoder (d768, 12 heads, seq 128) and ResNet-50 against torch eager and torch.compile.
GPU_BENCH := $(BIN)/xpuport bench --suite --backend cuda --profile nvidia/h100 \
	--models encoder-768,resnet50 --batches 1,32 --vs torch,torch.compile
gpu-check: $(STAMP)
	$(BIN)/python -m pytest -q -m gpu tests
	$(BIN)/xpuport conform --backend cuda --profile nvidia/h100 --suite ops -j 2 --out out/cuda
	$(GPU_BENCH) --out out/bench-cuda-float32
	$(GPU_BENCH) --precision float16 --out out/bench-cuda-float16

$(VENV)/.sources: FORCE
	@mkdir -p $(VENV)
	@echo "$(SOURCES)" | cmp -s - $@ || echo "$(SOURCES)" > $@

$(STAMP): pyproject.toml plugins/npusim/pyproject.toml $(VENV)/.sources
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned: an unpinned torch pulls GBs of CUDA wheels; 2.13.0 resolves to the local CPU build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[export,dev]" --config-settings editable_mode=strict
	# The NPU simulator is a plugin package of its own, registered through its entry point only.
	$(BIN)/python -m pip install -q -e plugins/npusim
	touch $@

clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache
