"""Recipe stage `teacher`: the bidirectional video transformer, trained by flow matching on recorded clips to draw
the reference style from noise, conditioned on the low-detail frame, the G-buffers and a style prompt.

Each conditioning part is dropped at its own rate so the model works without it (screen capture has no G-buffers;
classifier-free guidance needs the model without a style), and a share of clips gives every chunk its own noise
level, the situation the block-causal student meets. Writes RUN/teacher.{safetensors,json}; the JSON carries the
prompts, the styles and the sampler (steps, shift, guidance) that every later stage inherits.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from models.network import flow
from models.io.images import save_grid
from models.network.loading import architecture_of, network_for
from models.network.sampling import sample_teacher
from models.recipe.clips import RecipeData
from models.recipe.loop import LOSS_BINS, Stage, StepInput, StepLoss


class TeacherStage(Stage):
    name = "teacher"

    def __init__(self, clips: RecipeData):
        self.clips = clips
        self.cfg = clips.cfg
        self.dit_cfg = clips.dit_cfg
        self.dataset = clips.dataset
        self.device = clips.device
        self.model = network_for(clips.dit_cfg).to(clips.device)

    def draw(self, b: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random choice of a step for a global batch of b clips (so ranks agree): noise levels, noise,
        conditioning dropout, and a uniform number per clip that picks its prompt paraphrase."""
        cfg, k, f = self.cfg, self.dit_cfg.chunk_frames, self.cfg.clip_frames
        per_clip = flow.sample_train_sigma((b, 1), cfg.shift, rng).expand(b, f)
        per_chunk = flow.sample_train_sigma((b, f // k), cfg.shift, rng).repeat_interleave(k, 1)
        independent = torch.rand(b, 1, generator=rng) < cfg.per_chunk_noise
        paraphrase = torch.rand(b, generator=rng)
        c, h, w = self.dit_cfg.channels, *self.dit_cfg.sample_size
        return {
            "sigma": torch.where(independent, per_chunk, per_clip),
            "noise": torch.randn((b, f, c, h, w), generator=rng),
            "keep_low": torch.rand(b, generator=rng) >= cfg.drop_low,
            "keep_gbuffers": torch.rand(b, generator=rng) >= cfg.drop_gbuffers,
            "keep_style": torch.rand(b, generator=rng) >= cfg.drop_style,
            "paraphrase": paraphrase,
        }

    def loss(self, step: StepInput) -> StepLoss:
        clips, items = self.clips, step.items
        draws = {k: v[step.rows] for k, v in self.draw(step.global_batch, step.rng).items()}
        draws["style"] = clips.prompt_embeddings(items["style_index"], draws["paraphrase"])
        x0 = clips.to_model_space(items["style"].to(self.device))
        sigma = draws["sigma"].to(self.device)
        x_t = flow.add_noise(x0, draws["noise"].to(self.device), sigma)
        pred = self.model(x_t, sigma, clips.conditioning(items, draws), "bidirectional")
        frame_loss = flow.flow_loss(pred, x0, sigma, self.cfg.loss_min_sigma)  # (B, F)
        return StepLoss(frame_loss.mean(), *flow.loss_by_sigma_bin(frame_loss.cpu(), sigma.cpu(), LOSS_BINS))

    def meta(self):
        return {"kind": "teacher", "config": asdict(self.dit_cfg), **architecture_of(self.dit_cfg),
                "prompts": self.clips.prompts,
                "styles": self.dataset.style_names,
                "sampler": {"steps": self.cfg.sample_steps, "shift": self.cfg.shift, "guidance": self.cfg.guidance}}

    @torch.no_grad()
    def sample_grid(self, model, path: Path) -> None:
        """low-detail | teacher sample | reference, for one fixed clip per style."""
        clips = self.clips
        items = clips.grid_items()
        cond = clips.conditioning(items, style=clips.prompt_table[items["style_index"], 0])
        b, f = items["style"].shape[:2]
        shape = (b, f, self.dit_cfg.channels, *self.dit_cfg.sample_size)
        x, _ = sample_teacher(model, cond, shape, self.cfg.sample_steps, self.cfg.shift, self.cfg.guidance,
                              torch.Generator().manual_seed(0), self.device)
        frames = slice(0, f, max(1, f // 4))
        rows = [items["low"][:, frames], clips.to_pixels(x).clamp(-1, 1)[:, frames].cpu(), items["style"][:, frames]]
        save_grid(path, [r.flatten(0, 1) for r in rows], columns=len(range(*frames.indices(f))))
