# pdflow: `make run` sets up and trains once; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
WORKSPACE ?= $(if $(PDFLOW_WORKSPACE),$(PDFLOW_WORKSPACE),.pdflow)
RAW := $(WORKSPACE)/raw

.PHONY: run test test-fast setup lint bench bench-models lock catalogue suites clean fuzz ui demo

setup: $(STAMP)

# The environment is rebuilt only when the lock file changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --editable .
	@touch $(STAMP)

run: $(STAMP)
	@test -d $(RAW) || $(BIN)/pdflow --workspace $(WORKSPACE) generate --out $(RAW)
	$(BIN)/pdflow --workspace $(WORKSPACE) train --raw $(RAW)

# A simulated fortnight of the nightly loop on the default world, in a workspace and an MLflow
# store of its own, started afresh each time.
DAYS ?= 14
DEMO := $(abspath $(WORKSPACE))/demo
demo: $(STAMP)
	rm -rf $(DEMO)
	MLFLOW_TRACKING_URI=sqlite:///$(DEMO)/mlflow.db PDFLOW_MLFLOW__ARTIFACT_LOCATION=$(DEMO)/mlartifacts \
		$(BIN)/pdflow --workspace $(DEMO) demo --days $(DAYS)

# The MLflow UI over the store `make run` trains into (Ctrl-C stops it).
ui: $(STAMP)
	$(BIN)/pdflow --workspace $(WORKSPACE) ui

# The tests' temporary folders (generated roots: thousands of small files) go to a
# memory-backed folder where the machine has one with room (TEST_SHM_GIB free), one per
# checkout, removed after a run that passes (a failed run's are kept to read); elsewhere, or
# with `TEST_SHM=`, to pytest's default.
TEST_SHM_GIB ?= 4
ifeq ($(origin TEST_SHM), undefined)
TEST_SHM := $(shell test -d /dev/shm -a -w /dev/shm && \
	df -Pk /dev/shm | awk 'NR == 2 && $$4 > $(TEST_SHM_GIB) * 1048576 { ok = 1 } END { exit !ok }' && \
	echo /dev/shm/pdflow-tests-$$(printf %s "$(CURDIR)" | md5sum | cut -c1-12))
endif
# `$(call pytest,ARGS)`: the suite's pytest run on two workers, its folders removed if it passed.
pytest = $(BIN)/python -m pytest -n 2 --dist loadgroup $(if $(TEST_SHM),--basetemp=$(TEST_SHM)) \
	$(1) $(if $(TEST_SHM),&& rm -rf $(TEST_SHM))

test: $(STAMP)
	$(BIN)/ruff check .
	$(call pytest,tests)

# The inner loop: everything but the end-to-end flows and the gate's runs of the CLI on
# corrupted roots (markers slow and fuzz), the point-in-time property tests on 15 examples
# instead of 60.
test-fast: $(STAMP)
	$(BIN)/ruff check .
	PDFLOW_PROPERTY_EXAMPLES=15 $(call pytest,-m "not slow and not fuzz" tests)

# A longer search of the gate's fuzz suite (tests/test_gate_fuzz.py) than `make test` runs:
# FUZZ_EXAMPLES examples from a random seed, printed (replay with `make fuzz SEED=<seed>`),
# each failure shrunk to a minimal mixture of faults.
FUZZ_EXAMPLES ?= 60
fuzz: $(STAMP)
	@seed=$${SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}; \
	echo "hypothesis seed: $$seed (replay: make fuzz SEED=$$seed)"; \
	PDFLOW_FUZZ_PROFILE=fuzz PDFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest \
		-p no:xdist -m fuzz --hypothesis-seed=$$seed --hypothesis-show-statistics \
		tests/test_gate_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python tests/bench/bench_generate.py --users 1000000 --months 12 --out $(WORKSPACE)/bench/raw_1m --keep
	$(BIN)/python tests/bench/bench_gate.py --raw $(WORKSPACE)/bench/raw_1m
	$(BIN)/python tests/bench/bench_features.py --raw $(WORKSPACE)/bench/raw_1m --pandas-sample 0.1
	$(BIN)/python tests/bench/bench_train.py --raw $(WORKSPACE)/bench/raw_1m

# Every candidate and baseline out of time, with bootstrap intervals, on every scenario preset
# of the synthetic lender (data.generator.config.SCENARIOS); SCENARIOS=a,b picks some.
SCENARIOS ?=
bench-models: $(STAMP)
	$(BIN)/python tests/bench/bench_models.py --out $(WORKSPACE)/bench/models \
		$(if $(SCENARIOS),--scenarios $(SCENARIOS)) --json $(WORKSPACE)/bench/models/results.json

# Re-resolve the pinned lock file after editing pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --quiet -o requirements.lock

clean:
	rm -rf $(VENV) .pdflow

catalogue: $(STAMP)
	$(BIN)/python -m features.catalogue

# Regenerate the committed Great Expectations suites from data/rules.py and the feature definitions.
suites: $(STAMP)
	$(BIN)/python -m expectations.suites
