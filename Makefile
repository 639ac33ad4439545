# sparkrunner: `make demo` runs the example jobs end to end; `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-fast check-java venv cluster-up cluster-down bench-overhead bench-api bench-cluster bench-scoring bench-sandbox bench-warm bench-mlflow bench-envs bench-bulk clean

demo: check-java $(STAMP)
	$(PY) jobs/demo.py build/demo

# schemathesis gives each operation's test the same node id, which xdist's scheduler keeps once:
# the fuzzing runs in a process of its own (it starts no JVM).
FUZZ := tests/reliability/test_fuzz_api.py
FUZZ_LOG := build/test-fuzzing.log

# Everything: the fast tests, then real Spark, a Spark cluster, Airflow and the long scenarios.
# The fast tests mostly wait (on child processes, HTTP, timers), so four run at a time even on
# 2 cores, and the fuzzing runs beside them on the CPU they leave (its output goes to
# $(FUZZ_LOG), printed whole when it fails); then the e2e tests two at a time, a file (or the
# files sharing a Spark cluster or a Connect server, see tests/conftest.py) to a worker.
test: check-java $(STAMP)
	@mkdir -p $(dir $(FUZZ_LOG))
	@echo "the fuzzing ($(FUZZ)) runs beside the fast tests, into $(FUZZ_LOG)"
	@$(PY) -m pytest -m e2e -p no:cacheprovider $(FUZZ) > $(FUZZ_LOG) 2>&1 & fuzzing=$$!; \
	$(PY) -m pytest -m "not e2e" -n 4; fast=$$?; \
	wait $$fuzzing; fuzzed=$$?; \
	if [ $$fuzzed -eq 0 ]; then tail -n 1 $(FUZZ_LOG); else cat $(FUZZ_LOG); fi; \
	[ $$fast -eq 0 ] && [ $$fuzzed -eq 0 ]
	$(PY) -m pytest -m e2e -n 2 --dist loadfile --durations=20 --ignore=$(FUZZ)

# Every test not marked e2e, in about a minute; no JVM is started (a stub java fails any test
# that starts one, see tests/conftest.py).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not e2e" -n 4

check-java:
	@scripts/check-java

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,airflow]'
	@rm -f $(VENV)/.installed-* && touch $@

# A Spark standalone master and two workers on 127.0.0.1 (see conf/standalone.yaml).
cluster-up: check-java $(STAMP)
	$(VENV)/bin/sparkrunner cluster up --cluster-dir build/cluster

cluster-down: $(STAMP)
	$(VENV)/bin/sparkrunner cluster down --cluster-dir build/cluster

bench-overhead: check-java $(STAMP)
	$(PY) bench/overhead.py

bench-api: check-java $(STAMP)
	$(PY) bench/api.py

bench-cluster: check-java $(STAMP)
	$(PY) bench/cluster.py

bench-sandbox: check-java $(STAMP)
	$(PY) bench/sandbox.py

bench-envs: check-java $(STAMP)
	$(PY) bench/envs.py

bench-warm: check-java $(STAMP)
	$(PY) bench/warm.py

bench-bulk: check-java $(STAMP)
	$(PY) bench/bulk.py

# The scoring benchmarks (bench-scoring, bench-mlflow) get a venv of their own, with mlflow.
BENCH_VENV := build/bench-venv
$(BENCH_VENV)/.installed: pyproject.toml
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -e . 'scikit-learn>=1.4' mlflow-skinny
	@touch $@

bench-scoring: check-java $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/scoring.py $(BENCH_ARGS)

bench-mlflow: check-java $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/mlflow_bench.py $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache
