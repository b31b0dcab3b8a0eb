"""The adversarial term's discriminator (DMD2's GAN loss, with a network of its own): a small conditional patch
discriminator trained from scratch on the recorded reference frames against the student's samples.

No pretrained feature network exists here, so it judges pixels directly: per 16×16-pixel patch, whether the frame
is a reference render of this geometry in this style. It sees the frame beside the low-detail frame and the
G-buffers (so a frame that drops the geometry is told apart from one that keeps it), and the style through a
projection (the logit adds ⟨style embedding, patch features⟩), so a summer frame under a winter prompt is fake.
The real frames are the reference renderer's, which is why a one-step student trained against it can be sharper
than its teacher (DMD2).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.io.data import gbuffer_slice
from models.network.dit import TEXT_DIM

# G-buffer channels it reads: depth, normals, uv, AO and sun (the material id, a category, is left out)
_READ = gbuffer_slice("material").start


class PatchDiscriminator(nn.Module):
    """(frame, low-detail frame, G-buffers, style) -> logits (N, h/16, w/16), one per 16×16-pixel patch."""

    def __init__(self, width: int = 32, channels: int = 3, text_dim: int = TEXT_DIM):
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        cin = 2 * channels + _READ
        for w in widths:  # four stride-2 convolutions: 1/16 resolution, a receptive field of ~46 pixels
            layers += [nn.Conv2d(cin, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            cin = w
        self.features = nn.Sequential(*layers, nn.Conv2d(cin, cin, 3, padding=1), nn.LeakyReLU(0.2))
        self.logit = nn.Conv2d(cin, 1, 1)
        self.style = nn.Linear(text_dim, cin)

    def forward(self, frames: torch.Tensor, low: torch.Tensor, gbuffers: torch.Tensor | None, style: torch.Tensor
                ) -> torch.Tensor:
        """frames, low (B, F, C, H, W), gbuffers (B, F, ≥8, H, W) or None, style (B, 384) -> (B·F, H/16, W/16)."""
        b, f = frames.shape[:2]
        if gbuffers is None or gbuffers.shape[2] < _READ:
            gb = frames.new_zeros(b, f, _READ, *frames.shape[-2:])
        else:
            gb = gbuffers[:, :, :_READ].to(frames.dtype)
        x = torch.cat([frames, low.to(frames.dtype), gb], 2).flatten(0, 1)
        h = self.features(x)
        projection = self.style(style.to(h.dtype)).repeat_interleave(f, 0)  # (B·F, channels)
        return (self.logit(h) + (h * projection[:, :, None, None]).sum(1, keepdim=True) / h.shape[1] ** 0.5)[:, 0]


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating logistic loss of the discriminator: real patches to 1, the student's to 0."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The student's side: make its patches read as real."""
    return F.softplus(-fake_logits).mean()
