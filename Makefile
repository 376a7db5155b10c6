# mi-datagen — the two entry points: `make demo` and `make test` (each sets up .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

.PHONY: install demo test test-slow bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[torch,test]"
	touch $(STAMP)

install: $(STAMP)

## The main job on the shipped defaults.
demo: $(STAMP)
	@mkdir -p $(OUT)
	$(BIN)/mi-datagen validate dag_specs/two_modalities_sweep.yaml
	$(BIN)/mi-datagen info dag_specs/two_modalities.yaml
	$(BIN)/mi-datagen info dag_specs/two_modalities.yaml --json > $(OUT)/two_modalities.info.json
	$(BIN)/mi-datagen info dag_specs/multimodal_decay.yaml --no-conditionals
	$(BIN)/mi-datagen expand dag_specs/two_modalities_sweep.yaml -o $(OUT)/two_modalities_sweep.expanded.yaml
	@echo "demo: information manifest in $(OUT)/two_modalities.info.json, explicit sweep in $(OUT)/two_modalities_sweep.expanded.yaml"

## The test suite (fast; heavier tests are marked `slow` and run by `make test-slow`).
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_info.py

## Regenerate the MI tables in dag_specs/README.md.
docs: $(STAMP)
	$(BIN)/python -m mi_datagen.bench.spec_tables dag_specs/README.md

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
