"""The headless run: the bot plays for a while and the run is written as an mp4 and a PNG contact sheet.

Used by `restyler play --headless` and by `make play` on machines with no display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from bridge.outputs import write_atomic
from bridge.video import Mp4Writer

from .config import GameConfig
from .session import GameSession
from .styles import STYLES, style_for_prompt
from .visualize import depth_image, material_image, normals_image

SHEET_ROWS = 4   # moments of the run shown on the contact sheet


def run_headless(config: GameConfig, seconds: float, out: Path, style: str | None = None) -> dict[str, Path]:
    """Plays `seconds` of bot footage. The mp4 shows low-detail | reference style side by side."""
    out.mkdir(parents=True, exist_ok=True)
    shown = style_for_prompt(style) if style else next(iter(STYLES.values()))
    frames = max(1, int(round(seconds * config.fps)))
    sheet_at = set(np.linspace(0, frames - 1, SHEET_ROWS).round().astype(int).tolist())
    rows = []
    w, h = config.size
    video_path, sheet_path = out / "play.mp4", out / "contact_sheet.png"
    with GameSession(config) as game, Mp4Writer(video_path, config.fps, (2 * w, h)) as video:
        for i in tqdm(range(frames), desc=f"headless play ({shown.name})", unit="frame"):
            packet = game.step()
            styled = game.render_style(shown)
            video.write(np.concatenate([packet.rgb, styled], axis=1))
            if i in sheet_at:
                tiles = [packet.rgb, depth_image(packet.depth, config.far), normals_image(packet.normals),
                         material_image(packet.material)]
                tiles += list(game.render_styles().values())
                rows.append(np.concatenate(tiles, axis=1))
        score = game.score
    labels = ["low-detail", "depth", "normals", "material", *STYLES]
    save_sheet(np.concatenate(rows, axis=0), labels, w, sheet_path)
    print(f"wrote {video_path} ({frames} frames) and {sheet_path}; the bot collected {score} gems")
    return {"video": video_path, "sheet": sheet_path}


def save_sheet(grid: np.ndarray, labels: list[str], tile_w: int, path: Path) -> None:
    band = 16
    img = Image.new("RGB", (grid.shape[1], grid.shape[0] + band), (20, 20, 20))
    img.paste(Image.fromarray(grid), (0, band))
    draw = ImageDraw.Draw(img)
    for i, label in enumerate(labels):
        draw.text((i * tile_w + 3, 2), label, fill=(235, 235, 235))
    write_atomic(path, lambda tmp: img.save(tmp, format="PNG"))
