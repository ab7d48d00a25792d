# Everything a fresh machine needs: `make demo` and `make test` create .venv and install first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := dev,images,data,export,report,transfer
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo test test-fast lint bench proto clean

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

bench: $(STAMP)
	$(PY) -m bench

proto: $(STAMP)
	$(PY) tools/gen_proto.py

clean:
	rm -rf $(VENV) build dist .pytest_cache
