"""The recorded clips and style prompts every clip stage of the recipe trains on (teacher, ode, dmd, gen), and how
a batch of them becomes model inputs.

`RecipeData` reads the recorded data (models.io.data), embeds every style's training prompts once with the MiniLM
encoder, moves frames into model space (through the run's autoencoder for a latent-space model), and builds a
batch's Conditioning. The teacher stage is built on it; the later stages take it from `load_teacher`, together with
the trained teacher whose prompts and sampler they inherit.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from models.io.data import ClipDataset, collate, gbuffers_of
from models.io.images import save_grid
from models.network.dit import Conditioning, DiTConfig, VideoDiT
from models.network.loading import load_autoencoder, load_network
from models.network.prompt import PromptEncoder
from models.network.streaming import StudentSampler, stream_clip
from models.recipe.loop import TrainConfig, TrainError


class RecipeData:
    """Windows of `cfg.clip_frames` frames from `data`, every style's prompts embedded, on `device`."""

    def __init__(self, data: Path, run: Path, cfg: TrainConfig, dit_cfg: DiTConfig, prompts: dict[str, list[str]],
                 device: torch.device):
        self.cfg = cfg
        self.dataset = ClipDataset(data, clip_frames=cfg.clip_frames)
        # a game's own data names its styles' prompts (a style of the same name as the teacher's is retaught)
        prompts = {**prompts, **(self.dataset.prompts or {})}
        missing = [s for s in self.dataset.style_names if not prompts.get(s)]
        if missing:
            raise TrainError(f"no training prompts for styles {missing} of {data}")
        self.prompts = {s: list(prompts[s]) for s in self.dataset.style_names}
        self.device = device
        self.dit_cfg = dit_cfg
        self.autoencoder = load_autoencoder(run, device) if dit_cfg.space == "latent" else None
        if self.autoencoder is not None and self.autoencoder.cfg.down != dit_cfg.down:
            raise TrainError(f"the autoencoder in {run} is {self.autoencoder.cfg.down}x down but the model config "
                             f"expects {dit_cfg.down}x")
        encoder = PromptEncoder.shared()
        # (styles, paraphrases, 384); styles with fewer paraphrases repeat their first ones
        most = max(len(p) for p in self.prompts.values())
        self.prompt_table = torch.stack([encoder.encode([p[i % len(p)] for i in range(most)])
                                         for p in self.prompts.values()])
        self.paraphrases = torch.tensor([len(p) for p in self.prompts.values()])

    def prompt_embeddings(self, style_index: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """(B, 384): for each clip one paraphrase of its style's prompts, picked by a uniform number in [0, 1)."""
        return self.prompt_table[style_index, (uniform * self.paraphrases[style_index]).long()]

    def to_model_space(self, frames: torch.Tensor) -> torch.Tensor:
        if self.autoencoder is None:
            return frames
        with torch.no_grad():
            return self.autoencoder.encode_video(frames)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        if self.autoencoder is None:
            return x
        with torch.no_grad():
            return self.autoencoder.decode_video(x)

    def conditioning(self, items: dict[str, torch.Tensor], draws: dict[str, torch.Tensor] | None = None,
                     style: torch.Tensor | None = None) -> Conditioning:
        """The batch's low-detail frames, G-buffers and style (`style`, or draws["style"]), with the dropout flags
        of `draws` when it has them."""
        d = self.device
        draws = draws or {}
        return Conditioning(
            low=self.to_model_space(items["low"].to(d)),
            gbuffers=gbuffers_of(items, d),
            style=(draws["style"] if style is None else style).to(d),
            keep_low=None if "keep_low" not in draws else draws["keep_low"].to(d),
            keep_gbuffers=None if "keep_gbuffers" not in draws else draws["keep_gbuffers"].to(d),
            keep_style=None if "keep_style" not in draws else draws["keep_style"].to(d),
            motion=items["motion"].to(d) if "motion" in items else None,
        )

    def grid_items(self) -> dict[str, torch.Tensor]:
        """One fixed clip per style, spread over the data: what every stage's sample grid shows."""
        n_styles = len(self.dataset.style_indices)
        windows = len(self.dataset) // n_styles
        picks = [((i * 7919) % windows) * n_styles + i % n_styles for i in range(min(4, n_styles * windows))]
        return collate([self.dataset[i] for i in picks])


def load_teacher(run: Path, data: Path, cfg: TrainConfig, device: torch.device, clip_frames: int | None = None
                 ) -> tuple[RecipeData, VideoDiT, dict[str, Any]]:
    """The trained teacher of `run` (frozen, eval mode) with the recorded data and prompts it was trained on: what
    the stages after it start from. Its shift, and its clip length unless `clip_frames` asks for longer windows
    (the dmd stage's rollouts of several chunks), override `cfg`'s."""
    teacher, meta = load_network(run, "teacher", device)
    cfg = replace(cfg, clip_frames=clip_frames or teacher.cfg.clip_frames, shift=meta["sampler"]["shift"])
    clips = RecipeData(data, run, cfg, teacher.cfg, meta["prompts"], device)
    frame = tuple(clips.dataset.size[::-1])
    if frame != teacher.cfg.frame_size:
        raise TrainError(f"the teacher in {run} models {teacher.cfg.frame_size[1]}x{teacher.cfg.frame_size[0]} "
                         f"frames but {data} holds {frame[1]}x{frame[0]}")
    return clips, teacher.requires_grad_(False), meta


@torch.no_grad()
def student_grid(clips: RecipeData, model: VideoDiT, sampler: StudentSampler, path: Path) -> None:
    """low-detail | streamed student | reference, for one fixed clip per style."""
    items = clips.grid_items()
    style = clips.prompt_table[items["style_index"], 0]
    cond = clips.conditioning(items, style=style)
    out = stream_clip(model, clips.to_model_space(items["low"].to(clips.device)), cond, sampler,
                      torch.Generator().manual_seed(0))
    f = items["style"].shape[1]
    frames = slice(0, f, max(1, f // 4))
    rows = [items["low"][:, frames], clips.to_pixels(out).clamp(-1, 1)[:, frames].cpu(), items["style"][:, frames]]
    save_grid(path, [r.flatten(0, 1) for r in rows], columns=len(range(*frames.indices(f))))
