# The two commands a newcomer runs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test check unit lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

## run: start the simulator and the gateway with config/*.yaml on loopback
run: $(STAMP)
	$(PY) -m gateway.demo

## test: install, then run the whole suite and the static checks
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) --no-print-directory lint

## lint: import contracts between the rooms, strict typing, ruff
lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m mypy
	$(PY) -m ruff check smpp routing dlr gateway simulator tests bench

## unit: the fast tests only
unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/conformance

bench: $(STAMP)
	$(PY) bench/codec.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
