# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit bench clean system-deps oidc-provider

$(STAMP): pyproject.toml package-lock.json
	bash scripts/vendor-assets.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	bash scripts/system-deps.sh

oidc-provider: $(STAMP)
	bash scripts/oidc-provider.sh

demo: $(STAMP)
	$(BIN)/vitaltrail demo

test: $(STAMP) system-deps oidc-provider lint typecheck
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not browser"

bench: $(STAMP) system-deps
	$(BIN)/vitaltrail bench ingest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache node_modules dashboards/static/vendor tests/oidc/node_modules
