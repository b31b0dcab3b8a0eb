#!/usr/bin/env bash
# Score a model on games its training data never drew from: pygame's bundled example games, run on a virtual
# screen (Xvfb), grabbed by `restyler capture` (the game's own frames kept with --record-source, the live restyle
# with --record), then restyled offline and scored by `restyler eval-video` (structure, flicker, still_flicker,
# style_gain; docs/evaluation.md) with a side-by-side strip. Needs the Debian package xvfb.
#
#   MODEL=models/weights/default OUT=out/unseen_games bash scripts/unseen_games.sh
set -euo pipefail
MODEL=${MODEL:-models/weights/default}
OUT=${OUT:-out/unseen_games}
STYLE=${STYLE:-sunny summer day}
GRAB_SECONDS=${GRAB_SECONDS:-8}
SCORE_FRAMES=${SCORE_FRAMES:-120}
RESTYLER=${RESTYLER:-.venv/bin/restyler}
PYTHON=${PYTHON:-.venv/bin/python}
SCREEN=:${XVFB_DISPLAY:-97}

mkdir -p "$OUT"
Xvfb "$SCREEN" -screen 0 1280x720x24 -nolisten tcp > "$OUT/xvfb.log" 2>&1 &
XVFB=$!
trap 'kill $XVFB 2>/dev/null || true' EXIT
sleep 1
export DISPLAY=$SCREEN SDL_VIDEODRIVER=x11 SDL_AUDIODRIVER=dummy SDL_VIDEO_WINDOW_POS=0,0

# game:W,H — its window's size: no window manager runs, so each window sits undecorated at the screen's top-left.
# Nobody plays: a game that ends (aliens, once a bomb hits the unsteered car, after about 5 s) starts again, as a
# player's next round would.
for entry in ${GAMES:-aliens:640,480 chimp:1280,480 moveit:640,480}; do
    IFS=: read -r game size <<< "$entry"
    (while true; do "$PYTHON" -m "pygame.examples.$game" >> "$OUT/$game.log" 2>&1; done) &
    pid=$!
    sleep 3   # loaded and drawing
    "$RESTYLER" capture --region "0,0,$size" --headless --seconds "$GRAB_SECONDS" --style "$STYLE" \
        --model "$MODEL" --record "$OUT/${game}_live.mp4" --record-source "$OUT/$game.mp4"
    kill "$pid" 2>/dev/null || true
    pkill -f "pygame.examples.$game" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    "$RESTYLER" eval-video "$OUT/$game.mp4" --style "$STYLE" --model "$MODEL" --frames "$SCORE_FRAMES" \
        --json "$OUT/$game.json"
done
