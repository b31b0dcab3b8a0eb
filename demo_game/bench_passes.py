"""Frame time of every pass, to rerun the numbers in docs/passes.md: `python -m demo_game.bench_passes`.

Each pass is timed end to end as its users see it, read-back to numpy included (the recorder and the AI need the
pixels on the CPU). Medians over `--frames` ticks of the bot, after a warm-up that compiles shaders and draws the
shadow maps. The simulation tick (bot + gem meshes) is timed separately.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from .config import GameConfig
from .session import GameSession
from .styles import STYLES


def measure(sizes: list[tuple[int, int]], frames: int, seed: int) -> list[tuple[str, str, float]]:
    rows = []
    with GameSession(GameConfig(seed=seed)) as game:
        for _ in range(5):
            game.advance()
            for size in sizes:
                game.render_fast(size)
                for style in STYLES.values():
                    game.render_style(style, size)
                    game.render_sun(style, size)
        ticks = []
        timings: dict[tuple[str, tuple[int, int]], list[float]] = {}
        for _ in range(frames):
            t0 = time.perf_counter()
            game.advance()
            ticks.append(time.perf_counter() - t0)
            for size in sizes:
                t0 = time.perf_counter()
                game.render_fast(size)
                timings.setdefault(("fast pass (low-detail + G-buffers)", size), []).append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                game.render_sun("sunny summer", size)
                timings.setdefault(("sun G-buffer (one style)", size), []).append(time.perf_counter() - t0)
                for name, style in STYLES.items():
                    t0 = time.perf_counter()
                    game.render_style(style, size)
                    timings.setdefault((f"reference: {name}", size), []).append(time.perf_counter() - t0)
        rows.append(("simulation tick (bot, gems)", "-", 1000 * float(np.median(ticks))))
        for (name, size), ts in timings.items():
            rows.append((name, f"{size[0]}x{size[1]}", 1000 * float(np.median(ts))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=60, help="timed ticks; 60 gives stable medians in ~1 min")
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args()
    rows = measure([(128, 128), (768, 768)], args.frames, args.seed)
    print("| pass | size | median ms | fps alone |")
    print("|---|---|---|---|")
    for name, size, ms in rows:
        print(f"| {name} | {size} | {ms:.2f} | {1000 / ms:.0f} |")


if __name__ == "__main__":
    main()
