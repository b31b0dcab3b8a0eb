"""A small convolutional autoencoder: frames <-> normalised latents, `down`× smaller per side.

Used when a model is configured for latent space (DiTConfig.space = "latent"): the teacher and student then work on
its latents and the runtime decodes every output frame. Whether that pays off against pixel space is measured by
`python -m models.evaluation.latent_space` (docs/model.md has the numbers and the decision).

Latents are normalised per channel with statistics measured on training data after the autoencoder is trained
(`fit_latent_stats`), so the flow model sees roughly unit-variance inputs, like the pixels it would otherwise see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.io.config import at_least


@dataclass(frozen=True)
class AEConfig:
    latent_channels: int = 8
    widths: tuple[int, ...] = (32, 64, 128)  # one stride-2 level per entry: down = 2 ** len(widths)
    image_channels: int = 3

    def __post_init__(self) -> None:
        at_least(self, 1, "latent_channels", "widths", "image_channels")

    @property
    def down(self) -> int:
        return 2 ** len(self.widths)



class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class Encoder(nn.Module):
    def __init__(self, cfg: AEConfig):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cfg.image_channels, cfg.widths[0], 3, padding=1)]
        width = cfg.widths[0]
        for w in cfg.widths:
            layers += [nn.Conv2d(width, w, 4, stride=2, padding=1), ResBlock(w)]
            width = w
        layers += [nn.SiLU(), nn.Conv2d(width, cfg.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: AEConfig):
        super().__init__()
        widths = cfg.widths[::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, widths[0], 3, padding=1), ResBlock(widths[0])]
        width = widths[0]
        for w in widths[1:] + widths[-1:]:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, w, 3, padding=1), ResBlock(w)]
            width = w
        layers += [nn.SiLU(), nn.Conv2d(width, cfg.image_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Autoencoder(nn.Module):
    """encode: (N, 3, H, W) in [-1, 1] -> normalised latents (N, C, H/down, W/down); decode inverts it."""

    def __init__(self, cfg: AEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        return self.latent_mean.view(shape).to(z.dtype), self.latent_std.view(shape).to(z.dtype)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        mean, std = self._stats(z)
        return (z - mean) / std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return self.decoder(z * std + mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) -> (B, F, C, h, w)."""
        b, f = x.shape[:2]
        z = self.encode(x.flatten(0, 1))
        return z.view(b, f, *z.shape[1:])

    def decode_video(self, z: torch.Tensor) -> torch.Tensor:
        b, f = z.shape[:2]
        x = self.decode(z.flatten(0, 1))
        return x.view(b, f, *x.shape[1:])

    @torch.no_grad()
    def fit_latent_stats(self, frames: torch.Tensor) -> None:
        """Set the per-channel normalisation from sample frames (N, 3, H, W)."""
        z = self.encoder(frames)
        self.latent_mean.copy_(z.mean((0, 2, 3)))
        self.latent_std.copy_(z.std((0, 2, 3)).clamp_min(1e-4))


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + MSE: L1 keeps edges and textures sharper than MSE alone; MSE is what PSNR scores."""
    return F.l1_loss(recon, target) + F.mse_loss(recon, target)
