"""Recipe stage `autoencoder` (only for a latent-space model): frames <-> normalised latents.

Trained on single frames of every style and of the low-detail pass, which the runtime encodes alike. Before each
checkpoint the latent statistics are measured on a fixed sample of training frames, so every saved autoencoder
normalises its latents. Writes RUN/autoencoder.{safetensors,json}.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from models.io.data import ClipDataset, collate
from models.io.images import save_grid
from models.network.autoencoder import AEConfig, Autoencoder, reconstruction_loss
from models.recipe.loop import Stage, StepInput, StepLoss, TrainConfig, batch_indices


def default_config() -> TrainConfig:
    return TrainConfig(steps=2000, batch=16, lr=1e-3, warmup=50, ema_decay=0.998, ema_start=100)


class AutoencoderStage(Stage):
    name = "autoencoder"

    def __init__(self, data: Path, cfg: TrainConfig, ae_cfg: AEConfig, device: torch.device):
        # one-frame windows from every style and the low-detail pass alike: the runtime encodes both
        self.dataset = ClipDataset(data, clip_frames=1)
        self.ae_cfg = ae_cfg
        self.model = Autoencoder(ae_cfg).to(device)
        self.device = device

    def loss(self, step: StepInput) -> StepLoss:
        # per item the style frame or, one time in four, its low-detail frame: the runtime encodes both
        use_low = (torch.rand(step.global_batch, generator=step.rng) < 0.25)[step.rows]
        items = step.items
        x = torch.where(use_low[:, None, None, None], items["low"][:, 0], items["style"][:, 0]).to(self.device)
        return StepLoss(reconstruction_loss(self.model(x), x))

    def meta(self):
        return {"kind": "autoencoder", "config": asdict(self.ae_cfg)}

    @torch.no_grad()
    def before_save(self, model: Autoencoder) -> None:
        """Measure the latent statistics on a fixed sample of training frames."""
        idx = batch_indices(0, min(256, len(self.dataset)), len(self.dataset), 12345)
        items = collate([self.dataset[i] for i in idx])
        frames = torch.cat([items["style"][:, 0], items["low"][:, 0]]).to(self.device)
        model.fit_latent_stats(frames)

    @torch.no_grad()
    def sample_grid(self, model, path):
        items = collate([self.dataset[i] for i in range(0, len(self.dataset), max(1, len(self.dataset) // 8))][:8])
        x = items["style"][:, 0].to(self.device)
        save_grid(path, [x, model(x).clamp(-1, 1)])
