# The two commands a fresh machine needs: `make demo` and `make test`.
# Each creates .venv from setup.py on first use (about two minutes: TensorFlow is large).
PYTHON ?= python3
VENV   ?= .venv
OUT    ?= out/demo
BIN     = $(VENV)/bin

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: venv
	$(BIN)/retail-ann demo --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) out
