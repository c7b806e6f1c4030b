# ropebook: `make book` builds the site, `make test` runs every test. Each sets itself up.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
JB_FLAGS := -W -n --keep-going
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export MPLBACKEND := Agg

.PHONY: help setup vendor book book-student test mutate mutate-tests lab serve browser clean

help:
	@echo "make book          build the reader's edition into _build/html (executes pages, uses the cache)"
	@echo "make book-student  build the student edition (no solutions anywhere) into _build/student/html"
	@echo "make test          run every test: package, identities, both book builds, headless browser"
	@echo "make mutate        run every page against deliberately wrong copies of the package (minutes)"
	@echo "make mutate-tests  run the test files against the wrong copies that only tests catch (minutes)"
	@echo "make lab           JupyterLab with jupytext: open book/*.md as notebooks"
	@echo "make serve         serve the built site on http://127.0.0.1:8000"

# --- set-up -----------------------------------------------------------------
$(STAMPS)/venv: requirements.txt pyproject.toml
	@mkdir -p $(STAMPS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(STAMPS)/node: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Copy the few files the site serves from node_modules into _vendor/vendor/ (html_static_path).
$(STAMPS)/vendor: $(STAMPS)/node
	rm -rf _vendor && mkdir -p _vendor/vendor/widgets _vendor/vendor/mathjax/output
	cp node_modules/requirejs/require.js _vendor/vendor/require.min.js
	cp _ext/widgets-config.js _vendor/vendor/widgets-config.js
	cp node_modules/@jupyter-widgets/html-manager/dist/embed-amd.js _vendor/vendor/widgets/
	cp node_modules/@jupyter-widgets/html-manager/dist/*.{woff,woff2,eot,svg,ttf} _vendor/vendor/widgets/
	cp node_modules/mathjax/es5/tex-chtml.js _vendor/vendor/mathjax/
	cp -r node_modules/mathjax/es5/{input,ui,a11y,adaptors,sre} _vendor/vendor/mathjax/
	cp -r node_modules/mathjax/es5/output/chtml _vendor/vendor/mathjax/output/
	@touch $@

setup: $(STAMPS)/venv
vendor: $(STAMPS)/vendor

# Debian's chromium for the browser test; installed where we may (root with apt-get).
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not found and cannot install it: browser tests will skip (they fail when CI=true)"; fi

# --- the book ---------------------------------------------------------------
define print_reports
	find $(1)/html/reports -name '*.log' 2>/dev/null | sort | while read -r f; do echo "=== $$f"; cat "$$f"; done
endef

book: setup vendor
	@rm -rf _build/html
	@start=$$(date +%s); \
	if ROPEBOOK_EXECUTE=$${ROPEBOOK_EXECUTE:-cache} $(BIN)/jupyter-book build . $(JB_FLAGS); then \
	  echo "Built in $$(( $$(date +%s) - start )) s: $(CURDIR)/_build/html/index.html"; \
	else $(call print_reports,_build); exit 1; fi

book-student: setup vendor
	$(BIN)/python tools/student_edition.py build --out _build/student

# --- tests ------------------------------------------------------------------
# Two workers, one torch thread each (unless OMP_NUM_THREADS says otherwise): with two workers and the
# pages' kernels each spinning up a thread a core, the threads fight for the cores. On this project's 2-core
# machine, crope's eight-seed training cell took 292 s beside a busy process at 2 threads and 10.5 s at 1.
# Two fresh-clone .ci/run back to back: 1371 s with OMP_NUM_THREADS=2, 1293 s with 1 (each book build's
# notebooks 423 s and 304 s; crope's page 142 s and 35 s). The machine's speed drifts more than that: the
# same run took 927 s two hours earlier.
test: setup vendor browser
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -n 2 --dist loadgroup

# Not part of `make test` (it executes pages once per mutant); CI checks that the table still applies.
mutate: setup
	$(BIN)/python tools/mutate.py run $(MUTATE_ARGS)

# The mutants no page can see (TEST_MUTANTS), against their test files only.
mutate-tests: setup
	$(BIN)/python tools/mutate.py run --test-table $(MUTATE_ARGS)

# --- local use ----------------------------------------------------------------
lab: setup
	$(BIN)/python -m pip install --quiet -r requirements-lab.txt
	$(BIN)/jupyter lab --notebook-dir=book

serve:
	@test -f _build/html/index.html || { echo "no site yet: run make book first"; exit 1; }
	$(BIN)/python -m http.server 8000 --bind 127.0.0.1 --directory _build/html

clean:
	rm -rf _build _vendor .jupyter_cache $(STAMPS)
