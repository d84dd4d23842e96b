# meshecho — every target installs what it needs into .venv first, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint typecheck bench images test-images checkov clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[echo,netdebug,test,dev]'
	touch $(STAMP)

# checkov pins many packages: it gets a venv of its own.
$(VENV)-checkov/.installed:
	$(PYTHON) -m venv $(VENV)-checkov
	$(VENV)-checkov/bin/pip install --quiet checkov
	touch $@

run: $(STAMP)
	$(BIN)/echo-server

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The whole suite: lint, types, both test tiers, manifests, and the image tests (which skip with a
# clear message when neither podman nor docker is present).
test: $(STAMP) $(VENV)-checkov/.installed lint
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest

test-fast: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m 'not images and not slow'

test-images: $(STAMP) $(VENV)-checkov/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -m images tests/images

bench: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/echo_bench.py
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/prober_bench.py
	$(BIN)/python bench/samplesize_bench.py

images: $(STAMP)
	bash images/build.sh

clean:
	rm -rf $(VENV) $(VENV)-checkov .mypy_cache .ruff_cache .pytest_cache
