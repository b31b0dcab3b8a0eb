"""Recipe stage `gen`: teach a finished student to generate without structure channels (text-to-video,
image-to-video, extension), while it keeps restyling exactly as before.

The distilled student never learned to draw a scene by itself: its ODE pairs and DMD rollouts all came from the
teacher conditioned on the low-detail frame and G-buffers, and the teacher itself saw both dropped together in
only ~3 % of its clips. Run from pure noise with no structure, both give a grey patch texture, and both ignore a
clean first chunk (docs/generation.md). So this stage trains the generation path directly on the recorded
reference frames, with the block-causal attention the rollout uses. Each step's batch is split in two:

    generation rows   structure dropped; the first c chunks are clean context (σ = 0, c uniform in 0..chunks-1:
                      c = 0 is text-to-video, c ≥ 1 image-to-video and extension), the rest are noised to
                      independent levels (diffusion forcing) and learn the flow-matching x0 target. In some rows
                      with one context chunk that chunk is a still (its first frame repeated), as an animated
                      image is given. Levels are drawn toward high noise, σ = 1 included, where generation
                      starts (GenConfig.start_level).
    anchor rows       structure kept, chunks at the student's own levels; the output is held to what the frozen
                      starting student gives for the same input, so restyling does not move.

`restyler train gen --init RUN` writes a complete new run directory whose student does both.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from models.io import checkpoint
from models.io.images import save_grid
from models.network import flow
from models.network.dit import Conditioning, VideoDiT
from models.network.generation import GenerationSampler, generate
from models.network.streaming import StudentSampler
from models.recipe.clips import RecipeData
from models.recipe.loop import LOSS_BINS, Stage, StepInput, StepLoss, TrainConfig


@dataclass(frozen=True)
class GenConfig:
    generation_rows: float = 0.75  # share of each batch trained to generate; the rest anchors restyling
    still_context: float = 0.5  # of rows with one context chunk: the chunk is a still image (image-to-video)
    anchor: float = 1.0  # weight of the restyling anchor against the generation loss
    # Generated chunks take σ = shift(u), u uniform, not the teacher's logit-normal (which puts only 3 % of draws
    # above σ = 0.95), and this share exactly at σ = 1: every generated chunk starts there, and that first step
    # decides what the chunk shows (from the context, or from the prompt alone)
    start_level: float = 0.25


def default_config() -> TrainConfig:
    # A new skill, not a polish: a teacher-like LR. The loss weight's σ floor is 0.5, not the teacher's 0.05:
    # with 0.05 the gradient is dominated by low noise, where a chunk denoises itself; drawing the next frames
    # from the context (copying it forward through attention) is learned at high noise (docs/generation.md).
    return TrainConfig(steps=500, batch=8, lr=3e-4, warmup=30, ema_decay=0.99, ema_start=100, sample_every=150,
                       checkpoint_every=50, drop_style=0.0, loss_min_sigma=0.5)


class GenerationStage(Stage):
    name = "gen"
    checkpoint_name = "student"

    def __init__(self, clips: RecipeData, student: VideoDiT, student_meta: dict[str, Any], gen_cfg: GenConfig,
                 init: Path):
        self.clips = clips
        self.gen_cfg = gen_cfg
        self.model = student.requires_grad_(True).train()
        self.anchor = copy.deepcopy(student).eval().requires_grad_(False)  # the restyling to keep
        self.student_meta = student_meta
        self.init = init
        self.dataset = clips.dataset
        self.device = clips.device
        self.levels = checkpoint.config_from_json(StudentSampler, student_meta["sampler"]).sigmas()[:-1]

    def settings(self) -> GenConfig:
        return self.gen_cfg

    def draw(self, b: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random choice of a step for the global batch (so torchrun ranks agree)."""
        cfg, k = self.gen_cfg, self.model.cfg.chunk_frames
        f = self.clips.cfg.clip_frames
        n = f // k
        generating = torch.arange(b) < round(b * cfg.generation_rows)
        context = torch.randint(0, n, (b,), generator=rng)
        still = (torch.rand(b, generator=rng) < cfg.still_context) & (context == 1) & generating
        gen_sigma = flow.shift_sigma(torch.rand((b, n), generator=rng), self.clips.cfg.shift)
        gen_sigma = torch.where(torch.rand((b, n), generator=rng) < cfg.start_level, 1.0, gen_sigma)
        gen_sigma = torch.where(torch.arange(n)[None] < context[:, None], 0.0, gen_sigma)
        anchor_sigma = self.levels[torch.randint(len(self.levels), (b, n), generator=rng)]
        sigma = torch.where(generating[:, None], gen_sigma, anchor_sigma).repeat_interleave(k, 1)
        c, h, w = self.model.cfg.channels, *self.model.cfg.sample_size
        return {"generating": generating, "still": still, "sigma": sigma,
                "noise": torch.randn((b, f, c, h, w), generator=rng),
                "paraphrase": torch.rand(b, generator=rng)}

    def loss(self, step: StepInput) -> StepLoss:
        clips, items, k = self.clips, step.items, self.model.cfg.chunk_frames
        d = {key: v[step.rows] for key, v in self.draw(step.global_batch, step.rng).items()}
        style = clips.prompt_embeddings(items["style_index"], d["paraphrase"])
        x0 = clips.to_model_space(items["style"].to(self.device))
        still = d["still"].to(self.device)
        x0[still, :k] = x0[still, :1]  # a still image as the first chunk
        sigma = d["sigma"].to(self.device)
        x_t = flow.add_noise(x0, d["noise"].to(self.device), sigma)
        structure = ~d["generating"].to(self.device)
        base = clips.conditioning(items, style=style)
        cond = Conditioning(low=base.low, gbuffers=base.gbuffers, style=base.style, keep_low=structure,
                            keep_gbuffers=structure, keep_style=torch.ones_like(structure))
        pred = self.model(x_t, sigma, cond, "block_causal")
        frame_loss = flow.flow_loss(pred, x0, sigma, clips.cfg.loss_min_sigma)  # (B, F)
        trained = (sigma > 0) & ~structure[:, None]  # generated frames; context frames are given
        generation_loss = (frame_loss * trained).sum()
        anchored = structure.nonzero().squeeze(1)
        anchor_loss = torch.zeros((), device=self.device)
        if len(anchored):
            with torch.no_grad():
                sub = Conditioning(low=base.low[anchored], gbuffers=base.gbuffers[anchored],
                                   style=base.style[anchored])
                target = self.anchor(x_t[anchored], sigma[anchored], sub, "block_causal")
            anchor_loss = (pred[anchored] - target).pow(2).mean() * len(anchored) * x0.shape[1]
        loss = (generation_loss + self.gen_cfg.anchor * anchor_loss) / frame_loss.numel()
        sums, counts = flow.loss_by_sigma_bin(frame_loss[trained].detach().cpu()[None],
                                              sigma[trained].cpu()[None], LOSS_BINS)
        return StepLoss(loss, sums, counts)

    def meta(self):
        meta = {k: v for k, v in self.student_meta.items() if k not in ("step", "train", "save_id")}
        meta["generation"] = {**asdict(self.gen_cfg), "init": {"run": str(self.init),
                                                                 "step": self.student_meta.get("step"),
                                                                 "save_id": self.student_meta.get("save_id")}}
        shipped = self.student_meta.get("generation", {}).get("sampler")
        if shipped:  # fine-tuning a shipped student keeps the generation sampler it was exported with
            meta["generation"]["sampler"] = shipped
        return meta

    @torch.no_grad()
    def sample_grid(self, model, path: Path) -> None:
        """Per style: text-to-video, and image-to-video from a recorded frame, 8 frames each."""
        clips = self.clips
        items = clips.grid_items()
        rows = []
        for i in range(len(items["style_index"])):
            style = clips.prompt_table[items["style_index"][i], 0][None].to(self.device)
            first = clips.to_model_space(items["style"][i: i + 1, :1].to(self.device))
            for context in (None, first):
                out = generate(model, GenerationSampler(shift=clips.cfg.shift), lambda _: style, 8, context,
                               torch.Generator().manual_seed(i))
                rows.append(clips.to_pixels(out).clamp(-1, 1)[0].cpu())
        save_grid(path, rows, columns=8)
