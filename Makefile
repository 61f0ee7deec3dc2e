# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AIRFLOW_HOME ?= $(CURDIR)/.airflow-home
PYTEST_ARGS ?=
# A fresh pytest temp folder per run: pytest prunes older numbered folders of the same user, which
# would delete the embedded PostgreSQL of another test run going on at the same time.
PYTEST_BASETEMP = $(shell mktemp -d /tmp/kestra-pytest-XXXXXX)

.PHONY: run test lint unit integration test-lowest-airflow clean

# --compile-bytecode: write every package's .pyc at install time. uv does not by default, and
# with PYTHONDONTWRITEBYTECODE set (as on our CI machines) every Airflow process would compile
# Airflow from source at each start (7 s instead of 4 s to import it on 2 cores).
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e ".[test,bench,standalone,engines]"
	touch $@

# --dags-folder: the example DAGs, also when $(AIRFLOW_HOME)/airflow.cfg sets [core] dags_folder.
run: $(BIN)/.installed
	AIRFLOW_HOME=$(AIRFLOW_HOME) $(BIN)/airflow kestra standalone --dags-folder $(CURDIR)/dags_examples

lint: $(BIN)/.installed
	$(BIN)/ruff check airflow_kestra_provider dags_examples tests
	$(BIN)/ruff format --check airflow_kestra_provider dags_examples tests
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest --basetemp=$(PYTEST_BASETEMP) $(PYTEST_ARGS)

unit: $(BIN)/.installed
	$(BIN)/python -m pytest --basetemp=$(PYTEST_BASETEMP) tests/unit $(PYTEST_ARGS)

integration: $(BIN)/.installed
	$(BIN)/python -m pytest --basetemp=$(PYTEST_BASETEMP) tests/integration $(PYTEST_ARGS)

# The unit and contract tests again on the lowest Airflow release the requirement allows, in a
# virtualenv of its own, when it is not the release `make test` installed (the newest one).
LOWEST_VENV = .venv-airflow-lowest
test-lowest-airflow: $(BIN)/.installed
	@lowest=$$($(BIN)/python -m airflow_kestra_provider.version_compat --lowest); \
	installed=$$($(BIN)/python -c "import airflow; print(airflow.__version__)"); \
	if [ "$$lowest" = "$$installed" ]; then \
		echo "lowest allowed Airflow $$lowest is the one installed: make test covered it"; exit 0; fi; \
	echo "unit and contract tests on Airflow $$lowest (make test ran $$installed)"; \
	test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV); \
	$(LOWEST_VENV)/bin/python -m pip install -q --disable-pip-version-check uv && \
	$(LOWEST_VENV)/bin/uv pip install -q --compile-bytecode --python $(LOWEST_VENV)/bin/python \
		-e ".[test]" "apache-airflow==$$lowest" && \
	$(LOWEST_VENV)/bin/python -m pytest --basetemp=$(PYTEST_BASETEMP) tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .airflow-home .mypy_cache .ruff_cache .pytest_cache
