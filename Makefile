# vlmsafety — `make run` and `make test` create .venv and install on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LAYERS ?= range(0,25)
# torch CPU threads for `make run`: the default organism is tiny, and on a CPU shared with other busy
# processes two or more OpenMP threads stall on each other (measured: 15-25x slower generation)
THREADS ?= 1
# prompts per generate call in `make run` (the organism is tiny; real checkpoints on a GPU may need 16)
BATCH ?= 64
RECIPES ?= textual,multimodal

.DEFAULT_GOAL := help
.PHONY: help setup run test organism sweep-layers unlearn align report score bench lint check-report clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install vlmsafety with its test extras

run: $(STAMP)  ## the headline demo: sweep every vision layer of the default model, print the table
	$(PY) run.py -m layer='$(LAYERS)' threads=$(THREADS) batch_size=$(BATCH)

test: $(STAMP)  ## run the test suite (offline)
	$(PY) -m pytest -q

organism: $(STAMP)  ## retrain the shipped organism (5-8 min on a shared 2-core CPU) and re-measure it
	$(PY) -m vlmsafety.organism.train --seed 0 --threads 1 --out vlmsafety/organism/checkpoint

sweep-layers: $(STAMP)  ## sweep layers of any model: make sweep-layers ARGS="model=tiny_mllama" LAYERS="range(0,9)"
	$(PY) run.py -m layer='$(LAYERS)' $(ARGS)

unlearn: $(STAMP)  ## paper 2 on the organism: textual vs multimodal unlearning, before/after + cost (< 1 min): make unlearn [RECIPES=textual,textual_npo] [ARGS=...]
	$(PY) run.py -m task=unlearn unlearn=$(RECIPES) threads=$(THREADS) batch_size=$(BATCH) $(ARGS)

align: $(STAMP)  ## layer-wise safety tuning vs unlearning on the organism, every vision layer before/after (docs/alignment.md): make align [ARGS=seed=1]
	$(PY) run.py -m task=unlearn unlearn=textual,multimodal,layerwise_sft,layerwise_dpo unlearn.eval.layers=all threads=$(THREADS) batch_size=$(BATCH) $(ARGS)

report: $(STAMP)  ## re-summarise a sweep: make report SWEEP=multirun_outputs/DATE/TIME
	$(PY) run.py task=report sweep_dir=$(SWEEP)

score: $(STAMP)  ## re-judge a run without generating: make score RUN=multirun_outputs/DATE/TIME JUDGES="[keyword,llamaguard3]"
	$(PY) run.py task=score run_dir=$(RUN) judge='$(or $(JUDGES),[keyword])'

bench: $(STAMP)  ## benchmarks (< 10 min): sweep cost, batched generation, unlearning steps; prints tables, writes docs/PERFORMANCE.md
	$(PY) -m benchmarks

check-report: $(STAMP)  ## render make run's report.html in headless Chromium (installs Debian's chromium; root), screenshot + console check
	scripts/check_report_browser.sh

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check vlmsafety tests benchmarks run.py hydra_plugins

clean:  ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun_outputs .pytest_cache .ruff_cache .cache
