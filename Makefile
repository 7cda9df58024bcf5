# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint demo bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	# Bytecode, as a wheel's install compiles it: an editable install has none, and where
	# PYTHONDONTWRITEBYTECODE is set every start would compile each module again.
	$(BIN)/python -m compileall -q monitor
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rekorwatch run -c $${REKORWATCH_CONFIG:-config/rekorwatch.yaml}

# Two workers (the machine's cores: the tests mostly wait on HTTP and the databases); the tests that
# restart PostgreSQL run alone afterwards, since they would cut the other worker's connections.
test: $(STAMP)
	$(BIN)/ruff check monitor tests bench migrations scripts
	$(BIN)/pytest -q -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/pytest -q -m serial $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check monitor tests bench migrations scripts
	$(BIN)/ruff format --check monitor tests bench migrations

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python bench/bench_catchup.py --floor --api tiles --entries 200000
	$(BIN)/python bench/bench_catchup.py --floor --api v1 --entries 100000
	$(BIN)/python bench/bench_catchup.py --floor --api tiles --entries 200000 --latency-ms 50
	$(BIN)/python bench/bench_catchup.py --floor --api v1 --entries 20000 --latency-ms 50
	$(BIN)/python bench/bench_catchup.py --floor --api tiles --entries 200000 --postgres
	$(BIN)/python bench/bench_catchup.py --floor --api v1 --entries 100000 --postgres
	$(BIN)/python bench/bench_decode.py
	$(BIN)/python bench/bench_commit.py
	$(BIN)/python bench/bench_ct.py --entries 200000
	$(BIN)/python bench/bench_queries.py
