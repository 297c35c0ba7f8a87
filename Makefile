# pretrainflow: `make demo` runs the whole pipeline, `make test` runs the tests.
# Both create or reuse .venv and install the exact versions in constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTHON_DOCS := /usr/share/doc/python3.11/html
ZH_DOCS := data/samples/manpages-zh

# Offline hygiene: no telemetry, and a generous start-up time for Prefect's ephemeral API.
export DO_NOT_TRACK := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

.PHONY: demo test test-fast install python-docs zh-docs clean serve ui-check bench bench-corpus bench-instances bench-pretrain bench-serve faults

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(STAMP)

# The demo corpus: Debian's Python HTML documentation, served on 127.0.0.1 and crawled.
python-docs:
	@test -f $(PYTHON_DOCS)/index.html || { \
	  echo "Installing Debian's python3.11-doc (the demo and test corpus) ..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3.11-doc >/dev/null; }

# The Chinese sample corpus (configs/zh-tiny.yaml): Debian's manpages-zh (apt-get download, nothing installed),
# rendered by man(1) into Google BERT's text format, one file per manual section.
zh-docs: install
	@test -f $(ZH_DOCS)/man1.txt || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  apt-cache show manpages-zh >/dev/null 2>&1 || $$SUDO apt-get update -qq; \
	  command -v man >/dev/null || $$SUDO apt-get install -y -qq man-db >/dev/null; \
	  $(BIN)/python -m tasks.corpus.zh_manpages $(ZH_DOCS); }

demo: install python-docs
	$(BIN)/pretrainflow demo

# Prefect server + worker and MLflow server on 127.0.0.1 (UIs on :4200 and :5000), deployments
# registered; Ctrl-C stops them. Pass flags with ARGS, e.g. make serve ARGS='--mlflow-port 5001'.
serve: install
	$(BIN)/pretrainflow serve $(ARGS)

test: install python-docs zh-docs
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m 'not slow'

# The Prefect UI in Debian's headless Chromium (apt) driven by Playwright (pip, no browser download): serves,
# runs the tiny pipeline, checks the pages a user opens; screenshots in ui-check/ (~3 min, not part of `make test`)
ui-check: install python-docs
	@command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[ui]'
	$(BIN)/python -m pytest -q -s tests/ui/check_ui.py

# Crawl rate and cleaning throughput, ours vs datatrove (its own venv in .bench/, built on first use).
bench-corpus: install python-docs
	$(BIN)/python bench/corpus_bench.py

# Instance generation and text -> instances through the CLI, against Google's algorithm in plain Python run
# the same way, 1x and 10x the Python docs, 3 repeats (~40 min; --scales 1 --repeats 1: ~2 min).
bench-instances: install python-docs
	PYTHONPATH=. $(BIN)/python bench/instances_bench.py

# CPU tokens/s of the engine vs Hugging Face Trainer (tiny, mini), and the loader's headroom.
bench-pretrain: install
	PYTHONPATH=. $(BIN)/python bench/pretrain_speed.py

# Start-up time and memory of `pretrainflow serve`, first start and restarts (3 starts, ~2 min).
bench-serve: install
	$(BIN)/python bench/serve_bench.py

# What `pretrainflow run STAGE` adds over `pretrainflow task STAGE` (Prefect + MLflow), tokenize and instances,
# cached and built, 3 runs each (~15 min); ARGS='--served' runs them against one `prefect server start`.
.PHONY: bench-prefect
bench-prefect: install
	$(BIN)/python bench/prefect_overhead.py $(ARGS)

bench: bench-corpus bench-instances bench-pretrain bench-serve

# The tiny pipeline while one piece at a time is damaged on disk: a table of what was detected (~6 min).
faults: install python-docs
	$(BIN)/python bench/fault_injection.py

clean:
	rm -rf data mlflow.db mlartifacts mlruns .pytest_cache ui-check
