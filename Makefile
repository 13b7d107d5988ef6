# Two commands set everything up on a machine with only Python:
#   make demo   - create .venv if missing, then run the whole pipeline on FabricSim
#   make test   - create .venv if missing, then run the test suite (end-to-end runs left out)
#   make test-e2e - the whole-stage end-to-end tests (`e2e` marker); CI runs both
#   make test-export - installs the [export] extra into .venv (jax2onnx, onnxruntime; jax, jaxlib
#                 and flax held at the versions already there) and runs the ONNX / SavedModel
#                 parity tests (`export` marker); CI runs it after the two above
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= demo_out

.PHONY: demo test test-e2e test-export bench venv clean

$(BIN)/fabgen: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/fabgen

venv: $(BIN)/fabgen

demo: venv
	$(BIN)/fabgen demo --workdir $(WORKDIR)

test: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "not e2e" --durations=15 tests

test-e2e: venv
	$(BIN)/python -m pytest -n 2 --dist loadfile -q -m "e2e and not export" --durations=10 tests

# The converters must not move the stack the rest was tested on: pip gets the installed jax,
# jaxlib and flax as constraints, so a conflicting extra is an install error, not an upgrade.
test-export: venv
	$(BIN)/pip freeze | grep -iE '^(jax|jaxlib|flax)==' > $(VENV)/export-constraints.txt
	$(BIN)/pip install -q -c $(VENV)/export-constraints.txt -e '.[test,export]'
	$(BIN)/python -m pytest -n 2 --dist load -q -m export --durations=10 tests

bench: venv
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) $(WORKDIR)
