# Everything a fresh machine needs: `make demo` and `make test` create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := dev,images,data,export,report,transfer,tf,keras,tensorflow,jax
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo test test-fast lint bench proto clean fuzz

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU wheel (2.13.0) in pyproject.toml; never pull a CUDA build.
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(PY) -m modelport.demo

test: $(STAMP)
	$(PY) tools/gen_proto.py --check
	$(PY) -m pytest -n 2 -q

test-fast: $(STAMP)
	$(PY) -m pytest -n 2 -q -m "not slow and not network"

lint: $(STAMP)
	$(PY) -m ruff check src tests tools bench
	$(PY) -m mypy

# The peers bench/inference.py measures against. --no-deps: caffe2onnx 2.0.1 pins onnx==1.6.0
# (no wheel for Python 3.11; it runs with the onnx installed here), onnx2torch would pull
# torchvision, whose PyPI wheel needs its own torch build (the bench then reports it as failing).
BENCH_PEERS := caffe2onnx==2.0.1 onnx2torch==1.5.15

bench: $(STAMP)
	$(PY) -m pip install -q --no-deps $(BENCH_PEERS)
	$(PY) -m bench

# Fuzz every Caffe reader (tools/fuzz.py: >= 100k inputs, counts per reader, crashers kept in
# build/fuzz/). atheris (coverage-guided) when its wheel installs, else the built-in mutator.
FUZZ_ARGS ?=

fuzz: $(STAMP)
	$(PY) -m pip install -q atheris==3.0.0 || echo "atheris did not install: using the built-in mutation fuzzer"
	nice $(PY) tools/fuzz.py $(FUZZ_ARGS)

proto: $(STAMP)
	$(PY) tools/gen_proto.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
