#!/usr/bin/env bash
# One call on a lent CUDA GPU (the device tool: 15 minutes of device time a session, 10 a command), prepared so that
# whoever is lent one runs it at once:
#   1. the CUDA rows of `restyler bench` for the shipped student: three runs at the model's size with the game
#      loop allowed 240 fps (a 60 fps game caps what a GPU can show), one with the teacher, one at 256x256;
#   2. the seconds per step of every recipe stage at the GPU profile's sizes and batches (Makefile PROFILE=gpu),
#      which is what sizing a GPU recipe needs;
#   3. as long as its time budget lasts, the shipped student's last two steps (polish, finish) again on the GPU
#      at batch 16, its fp16 weights brought back. Ship them only if `restyler eval` here shows they beat the
#      shipped student (docs/evaluation.md).
# Precision: `auto`, which is bf16 on CUDA (docs/runtime.md). What comes back under $OUT: results.json (every bench
# row, every stage's speed and last log line, the machine), session.log, and student.{json,safetensors}.
#
# On this machine, around the call (what travels must stay under 64 MiB: the generation, tiles and v2 weights and
# the media stay behind, and the prompt encoder, 88 MB, is replaced by a table of the prompts the call uses):
#   bash scripts/gpu_session.sh prepare     # wheels into .whl, the prompt table into .gpu, big folders set aside
#   device run: command "bash scripts/gpu_session.sh run", carry [".whl", ".gpu"], timeout_s 570
#   bash scripts/gpu_session.sh restore     # the folders back (also after a failed call)
# The dry run on the CPU at tiny sizes (one bench run, a thread worker), what tests/test_gpu_session.py runs:
#   TINY=1 OUT=out/gpu_dry MODEL=DIR bash scripts/gpu_session.sh run     # DIR: a model of 64x64 frames
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ASIDE=${ASIDE:-../restyler-gpu-aside}                         # where `prepare` sets the folders the call needs not
BIG=(models/weights/generation models/weights/tiles models/weights/v2 docs/media)
WHEELS=(pygame-ce==2.5.8 moderngl==5.13.0 glcontext==3.1.0 mss==10.2.0)   # what the GPU image lacks (Python 3.12)

prepare() {
    local py=${PYTHON:-.venv/bin/python}
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    "$py" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    "$py" - <<'EOF'
from demo_game.styles import STYLES
from models.network.prompt import write_prompt_table
from renderer.bench import STYLE
prompts = [STYLE] + [p for s in STYLES.values() for p in s.all_prompts]
print("prompt table:", write_prompt_table(".gpu/prompts.safetensors", prompts), len(set(prompts)), "prompts")
EOF
    mkdir -p "$ASIDE"
    for path in "${BIG[@]}"; do
        if [[ -e $path ]]; then mkdir -p "$ASIDE/$(dirname "$path")"; mv "$path" "$ASIDE/$path"; fi
    done
    echo "set aside in $ASIDE: ${BIG[*]}; what travels: $(du -sh --exclude=.git --exclude=.venv --exclude=data \
        --exclude=runs --exclude=out . | cut -f1); run \`bash scripts/gpu_session.sh restore\` after the call"
}

restore() {
    for path in "${BIG[@]}"; do
        if [[ -e $ASIDE/$path && ! -e $path ]]; then mv "$ASIDE/$path" "$path"; fi
    done
    git status --short -- "${BIG[@]}"
}

run() {
    : "${OUT:?set OUT to the folder whose files come back (the device tool sets it)}"
    local budget=${BUDGET:-540} start=$SECONDS
    local work=${WORK:-/tmp/restyler-gpu}
    left() { echo $((budget - (SECONDS - start))); }
    mkdir -p "$OUT" "$work"
    exec > >(tee "$OUT/session.log") 2>&1
    if [[ -d .whl ]] && ls .whl/*.whl > /dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl
        export PYTHONPATH=/tmp/site:$PWD
    else
        export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
    fi
    local table=${PROMPT_TABLE:-.gpu/prompts.safetensors}
    if [[ -f $table ]]; then export RESTYLER_PROMPT_TABLE=$(realpath "$table"); fi
    export SDL_VIDEODRIVER=offscreen SDL_AUDIODRIVER=dummy PYTHONUNBUFFERED=1
    local py=${PYTHON:-python3}
    local r="$py -m restyler"
    local model=${MODEL:-models/weights/default}

    # the sizes: the GPU profile's (Makefile, PROFILE=gpu), or the tiny profile's for the dry run on a CPU
    local device=cuda seconds=8 game_fps=240 display=(--display 256x256) steps=50 polish_steps=1200 bench_runs=3
    local worker=process
    local record=(--seeds 0:16 --frames 48 --size 128x128) size=M student_size=student
    local batch_reg=64 batch_teacher=32 batch_student=16 clip_reg=2 clip_teacher=4 pair_clips=64
    if [[ -n ${TINY:-} ]]; then
        device=cpu seconds=1 game_fps=30 display=() steps=2 polish_steps=2 bench_runs=1 worker=thread
        record=(--seeds 0:2 --frames 16 --size 64x64) size=tiny student_size=tiny
        batch_reg=2 batch_teacher=2 batch_student=2 pair_clips=2
    fi
    echo "gpu_session: device $device, budget ${budget} s"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
        > "$work/machine.csv" || true

    # 1. the CUDA bench rows
    mkdir -p "$work/bench"
    local bench=($r bench --model "$model" --device "$device" --seconds "$seconds" --game-fps "$game_fps"
                 --worker "$worker")
    for i in $(seq "$bench_runs"); do
        "${bench[@]}" --no-teacher --json "$work/bench/student_$i.json"
    done
    "${bench[@]}" --json "$work/bench/with_teacher.json"
    if ((${#display[@]})); then
        "${bench[@]}" --no-teacher "${display[@]}" --json "$work/bench/display_256.json"
    fi
    echo "gpu_session: bench done, $(left) s left"

    # 2. seconds per step of every stage at the profile's sizes
    local data=$work/data stages=$work/stages
    $r record-data --out "$data" "${record[@]}"
    $r train regression --data "$data" --out "$stages" --arch unet --size "$size" --steps "$steps" \
        --batch "$batch_reg" --clip-frames "$clip_reg"
    $r train teacher --data "$data" --out "$stages" --arch unet --size "$size" --steps "$steps" \
        --batch "$batch_teacher" --clip-frames "$clip_teacher" --guidance 1 --init "$stages"
    $r train ode --data "$data" --out "$stages" --size "$student_size" --timesteps 1000 --refresh last_step \
        --noise warped --history on --pair-clips "$pair_clips" --batch "$batch_student" --lr 1e-3 --regression 0.5 \
        --steps "$steps"
    $r train dmd --data "$data" --out "$stages" --clip-frames 8 --steps "$steps" --batch "$batch_student" \
        --fake-updates 5 --lr 5e-5 --regression 0.5 --gan 0.05 --temporal 0.2
    echo "gpu_session: stage speeds done, $(left) s left"

    # 3. polish and finish the shipped student on the GPU (the dry run: the tiny student of step 2), while time lasts
    local init=$model polish=$work/polish finish=$work/finish
    [[ -n ${TINY:-} ]] && init=$stages
    mkdir -p "$polish"
    cp -p "$init"/teacher.json "$init"/teacher.safetensors "$polish"/
    local common=(--data "$data" --clip-frames 8 --steps "$polish_steps" --batch "$batch_student" --distribution 0
                  --regression 1 --temporal 0.3)
    if (($(left) > 60)); then
        timeout $(($(left) - 40)) $r train dmd --out "$polish" --init "$init" "${common[@]}" --lr 1e-4 --gan 0.05 \
            || echo "gpu_session: the polish stopped at the time budget; its last checkpoint is kept"
    fi
    if (($(left) > 60)) && [[ -f $polish/student.safetensors ]]; then
        mkdir -p "$finish" && cp -p "$init"/teacher.json "$init"/teacher.safetensors "$finish"/
        timeout $(($(left) - 30)) $r train dmd --out "$finish" --init "$polish" "${common[@]}" --lr 5e-5 --gan 0.02 \
            || echo "gpu_session: the finish stopped at the time budget; its last checkpoint is kept"
    fi
    local last="" run_dir
    for run_dir in "$finish" "$polish"; do
        if [[ -f $run_dir/student.safetensors ]]; then last=$run_dir; break; fi
    done
    if [[ -n $last ]]; then $py -m models.recipe.export "$last" "$OUT" --only student; fi

    # everything small in one file: the device tool brings back at most 8 files
    $py - "$work" "$OUT/results.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
results = {"bench": {p.stem: json.loads(p.read_text()) for p in sorted((work / "bench").glob("*.json"))},
           "stages": {}, "machine": (work / "machine.csv").read_text() if (work / "machine.csv").exists() else None}
for log in sorted(work.glob("*/logs/*.jsonl")):
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    results["stages"][f"{log.parent.parent.name}/{log.stem}"] = lines[-1] if lines else None
out.write_text(json.dumps(results, indent=2) + "\n")
print(f"wrote {out}: {len(results['bench'])} bench runs, stages {sorted(results['stages'])}")
EOF
    echo "gpu_session: done in $((SECONDS - start)) s"
}

case ${1:-} in
    prepare) prepare ;;
    restore) restore ;;
    run) run ;;
    *) echo "usage: bash scripts/gpu_session.sh prepare|run|restore (see its first lines)" >&2; exit 2 ;;
esac
