# mi-datagen — the two entry points: `make demo` and `make test` (each sets up .venv on first use).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
OUT    ?= out/demo

PEERS  := $(VENV)/.peers-stamp

.PHONY: install peers demo test test-slow bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[torch,test]"
	touch $(STAMP)

install: $(STAMP)

## Peer estimators (torch-mist, latentmi) for the benchmarks. They pin numpy < 2, which zarr 3 cannot use; they
## run on numpy 2 as far as mi_datagen.estimators.peers uses them, so they are installed without their pins.
$(PEERS): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check scikit-learn pyro-ppl pandas
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps torch-mist==0.2.17 latentmi==0.1.3
	touch $(PEERS)

peers: $(PEERS)

## The main job on the shipped defaults.
demo: $(STAMP)
	@mkdir -p $(OUT)
	$(BIN)/mi-datagen validate dag_specs/two_modalities_sweep.yaml
	$(BIN)/mi-datagen generate dag_specs/two_modalities.yaml -n 128 --shard-size 32 --out $(OUT)/two_modalities.zarr --overwrite
	$(BIN)/mi-datagen inspect $(OUT)/two_modalities.zarr
	@echo "demo: dataset $(OUT)/two_modalities.zarr (manifest.json inside), preview $(OUT)/two_modalities.zarr.preview.png"

## The test suite (fast; heavier tests are marked `slow` and run by `make test-slow`).
## Tests run on every core (pytest-xdist; one torch thread per worker, set in tests/conftest.py), a file's tests
## on one worker so that module fixtures (stores, flows) are built once.
test: $(STAMP) $(PEERS)
	$(BIN)/ruff check mi_datagen tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_info.py

## Regenerate the MI tables in dag_specs/README.md.
docs: $(STAMP)
	$(BIN)/python -m mi_datagen.bench.spec_tables dag_specs/README.md

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
