"""Recipe stage `regression`: the backbone (models.network.unet) trained by a plain pixel loss straight onto the
reference frames, one pass with no noise. It is the strongest non-generative alternative: every diffusion row of
`restyler eval` must justify itself against it, and its picture shows what full-resolution structure alone buys.

Trained on the same clips, prompts and conditioning dropout as the teacher (so it also works without G-buffers),
with L1, which keeps edges sharper than MSE. Writes RUN/regression.{safetensors,json}; `restyler eval` scores it as
the `regression` row when the model directory holds it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from models.io.images import save_grid
from models.network.loading import architecture_of
from models.network.unet import UNetDiT, regress
from models.recipe.clips import RecipeData
from models.recipe.loop import Stage, StepInput, StepLoss, TrainConfig


def default_config() -> TrainConfig:
    # one clip of 8 frames a step: a pixel loss converges fast, and the step costs about one teacher forward
    return TrainConfig(steps=1500, batch=1, lr=1e-3, warmup=50, ema_decay=0.995, ema_start=200, sample_every=500,
                       checkpoint_every=100, drop_style=0.0)


class RegressionStage(Stage):
    name = "regression"

    def __init__(self, clips: RecipeData):
        self.clips = clips
        self.cfg = clips.cfg
        self.dataset = clips.dataset
        self.device = clips.device
        self.model = UNetDiT(clips.dit_cfg).to(clips.device)

    def draw(self, b: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random choice of a step for the global batch: conditioning dropout and the prompt paraphrase."""
        return {"keep_low": torch.rand(b, generator=rng) >= self.cfg.drop_low,
                "keep_gbuffers": torch.rand(b, generator=rng) >= self.cfg.drop_gbuffers,
                "paraphrase": torch.rand(b, generator=rng)}

    def loss(self, step: StepInput) -> StepLoss:
        clips, items = self.clips, step.items
        draws = {k: v[step.rows] for k, v in self.draw(step.global_batch, step.rng).items()}
        draws["style"] = clips.prompt_embeddings(items["style_index"], draws.pop("paraphrase"))
        b, f = items["style"].shape[:2]
        pred = regress(self.model, clips.conditioning(items, draws), b, f)
        return StepLoss(F.l1_loss(pred, items["style"].to(self.device)))

    def meta(self):
        return {"kind": "regression", **architecture_of(self.clips.dit_cfg), "config": asdict(self.clips.dit_cfg),
                "prompts": self.clips.prompts, "styles": self.dataset.style_names}

    @torch.no_grad()
    def sample_grid(self, model, path: Path) -> None:
        """low-detail | regression | reference, for one fixed clip per style."""
        clips = self.clips
        items = clips.grid_items()
        cond = clips.conditioning(items, style=clips.prompt_table[items["style_index"], 0])
        b, f = items["style"].shape[:2]
        out = regress(model, cond, b, f).clamp(-1, 1).cpu()
        frames = slice(0, f, max(1, f // 4))
        rows = [items["low"][:, frames], out[:, frames], items["style"][:, frames]]
        save_grid(path, [r.flatten(0, 1) for r in rows], columns=len(range(*frames.indices(f))))
