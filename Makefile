# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv from setup.py on first use (about two minutes: TensorFlow is large).
PYTHON ?= python3
VENV   ?= .venv
OUT    ?= out/demo
BIN     = $(VENV)/bin

.PHONY: demo test test-fast venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

demo: venv
	$(BIN)/retail-ann demo --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q tests

test-fast: venv   # the suite without the tests marked slow (cluster, Delta, benches): a few minutes
	$(BIN)/python -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) out
