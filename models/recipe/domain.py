"""Domain randomisation of recorded clips: what a screen capture of a game the model never saw might look like.

A streamer's capture is RGB only, of a game with its own palette, drawn at some other resolution, blurred or
compressed on the way, with a HUD on top and maybe black bars. The recorded demo clips have one voxel world in one
palette, so a student trained on them alone keeps its input's colours only where they are the demo's and boils
elsewhere (docs/distillation.md, "Any game, RGB only"). `randomise_clip` turns one recorded clip into such a capture
while its target stays the exact reference of the same camera:

- palette: every material gets a random colour (an affine map of its flat colour, so the shading it carries stays),
  then the whole frame a random hue turn, saturation, contrast and gamma. The target is untouched: the model must
  read what is where from the shapes and the prompt, not from the demo's colours.
- capture artefacts: blur, drawn smaller and scaled back up (smooth or pixel-art blocky), 4:2:0 chroma, 8×8 block
  DCT quantisation (JPEG's loss), sensor-like noise. The target is untouched.
- letterbox: black bars on both sides of the pair (the capture letterboxes too, docs/runtime.md), in input and target.
- HUD: panels, bars and counters in a small bitmap font, drawn identically into input and target: a HUD passes
  through the restyle unchanged.

Every draw is made once per clip from `seed`, so the capture is steady in time (only the noise and the counters
change from frame to frame), and the same seed gives the same clip bit for bit. Nothing moves geometry: input and
target stay pixel-aligned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

MATERIAL_SLOTS = 64  # material ids at or above this share the last slot's colour


@dataclass(frozen=True)
class DomainConfig:
    """The probability of each randomisation, per clip (the palette's hue turn etc. are always drawn with it)."""

    palette: float = 0.85
    blur: float = 0.3
    rescale: float = 0.35
    chroma: float = 0.3
    blocks: float = 0.3
    noise: float = 0.3
    letterbox: float = 0.2
    hud: float = 0.5


def randomise_clip(low: torch.Tensor, target: torch.Tensor, material: torch.Tensor | None, seed: int,
                   cfg: DomainConfig = DomainConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip as a capture of another game: `low` and `target` (F, 3, H, W) in [-1, 1], `material` (F, 1, H, W)
    ids or None (then the palette only turns the whole frame). Returns new (low, target); the inputs are not
    changed, and what no draw touched keeps its exact values."""
    g = torch.Generator().manual_seed(int(seed))

    def chance(p: float) -> bool:
        return bool(torch.rand((), generator=g) < p)

    x, y = low.add(1).div(2), target   # the input's look is changed in [0, 1]; the target is only drawn on
    looks = [chance(cfg.palette), chance(cfg.rescale), chance(cfg.blur), chance(cfg.chroma), chance(cfg.blocks),
             chance(cfg.noise)]
    if looks[0]:
        x = recolour(x, material, g)
    if looks[1]:
        x = rescale(x, g)
    if looks[2]:
        x = blur(x, float(0.5 + torch.rand((), generator=g)))
    if looks[3]:
        x = subsample_chroma(x)
    if looks[4]:
        x = quantise_blocks(x, float(0.02 + 0.08 * torch.rand((), generator=g)))
    if looks[5]:
        x = x + (0.005 + 0.02 * torch.rand((), generator=g)) * torch.randn(x.shape, generator=g)
    x = x.clamp(0, 1).mul(2).sub(1) if any(looks) else low
    if chance(cfg.letterbox):
        x, y = letterbox(x, y, g)
    if chance(cfg.hud):
        x, y = draw_hud(x, y, g)
    return x.clone() if x is low else x, y.clone() if y is target else y


# ---------------------------------------------------------------------------------------------------------------
# Palette


def recolour(x: torch.Tensor, material: torch.Tensor | None, g: torch.Generator) -> torch.Tensor:
    """A random palette: each material's colour through its own random affine map (gain and offset per channel),
    then a hue turn about the grey axis, a saturation, contrast and gamma for the whole frame."""
    if material is not None:
        gain = 0.25 + 1.5 * torch.rand(MATERIAL_SLOTS, 3, generator=g)
        offset = 0.35 * (torch.rand(MATERIAL_SLOTS, 3, generator=g) - 0.5)
        ids = material[:, 0].clamp(0, MATERIAL_SLOTS - 1)               # (F, H, W)
        x = x * gain[ids].movedim(-1, 1) + offset[ids].movedim(-1, 1)
    angle = 2 * math.pi * float(torch.rand((), generator=g))
    saturation = float(0.3 + 1.3 * torch.rand((), generator=g))
    contrast = float(0.6 + 0.7 * torch.rand((), generator=g))
    gamma = float(math.exp(0.9 * (torch.rand((), generator=g) - 0.5)))
    grey = x.mean(1, keepdim=True)
    chroma = _turn_about_grey(x - grey, angle) * saturation
    x = (grey - 0.5) * contrast + 0.5 + chroma
    return x.clamp(0, 1) ** gamma


def _turn_about_grey(v: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate colour vectors (F, 3, H, W) by `angle` about the (1, 1, 1) axis (Rodrigues' formula)."""
    k = torch.full((3,), 1 / math.sqrt(3.0))
    cross = torch.tensor([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    turn = torch.eye(3) * math.cos(angle) + math.sin(angle) * cross + (1 - math.cos(angle)) * torch.outer(k, k)
    return torch.einsum("ij,fjhw->fihw", turn, v)


# ---------------------------------------------------------------------------------------------------------------
# Capture artefacts


def rescale(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Drawn at 40–85 % of the size and scaled back up: smoothly, or blocky like pixel art (nearest)."""
    h, w = x.shape[-2:]
    factor = float(0.4 + 0.45 * torch.rand((), generator=g))
    small = F.interpolate(x, size=(max(8, round(h * factor)), max(8, round(w * factor))), mode="area")
    if bool(torch.rand((), generator=g) < 0.5):
        return F.interpolate(small, size=(h, w), mode="nearest")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of standard deviation `sigma` pixels, edges reflected."""
    radius = max(1, math.ceil(2.5 * sigma))
    taps = torch.exp(-torch.arange(-radius, radius + 1).float() ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCBCR = torch.linalg.inv(_TO_YCBCR)


def _ycbcr(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,fjhw->fihw", _TO_YCBCR, x)


def _rgb(y: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,fjhw->fihw", _FROM_YCBCR, y)


def subsample_chroma(x: torch.Tensor) -> torch.Tensor:
    """4:2:0: the colour at half resolution in both directions, the brightness kept (video codecs' default)."""
    y = _ycbcr(x)
    h, w = x.shape[-2:]
    chroma = F.interpolate(F.avg_pool2d(y[:, 1:], 2, ceil_mode=True), size=(h, w), mode="bilinear",
                           align_corners=False)
    return _rgb(torch.cat([y[:, :1], chroma], 1))


def _dct_matrix(n: int = 8) -> torch.Tensor:
    """The orthonormal DCT-II matrix: rows are the cosine basis."""
    k = torch.arange(n).float()
    m = torch.cos(math.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


_DCT = _dct_matrix()


def quantise_blocks(x: torch.Tensor, step: float) -> torch.Tensor:
    """JPEG's loss: 8×8 block DCT of Y, Cb and Cr, each coefficient rounded to a step that grows with its frequency
    (`step` for the lowest, in [0, 1] units; chroma twice as coarse)."""
    f, c, h, w = x.shape
    ph, pw = -h % 8, -w % 8
    y = F.pad(_ycbcr(x), (0, pw, 0, ph), mode="replicate")
    d = _DCT
    blocks = y.unfold(2, 8, 8).unfold(3, 8, 8)                              # (F, 3, H/8, W/8, 8, 8)
    coeffs = d @ blocks @ d.T
    freq = torch.arange(8).float()
    steps = step * (1 + (freq[:, None] + freq[None]) / 2) * torch.tensor([1.0, 2.0, 2.0]).view(1, 3, 1, 1, 1, 1)
    blocks = d.T @ (torch.round(coeffs / steps) * steps) @ d
    y = blocks.permute(0, 1, 2, 4, 3, 5).reshape(f, c, h + ph, w + pw)[..., :h, :w]
    return _rgb(y)


# ---------------------------------------------------------------------------------------------------------------
# Overlays drawn into both input and target


def letterbox(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Black bars of the same random width at top and bottom, or at left and right, in input and target."""
    h, w = x.shape[-2:]
    across = bool(torch.rand((), generator=g) < 0.5)
    span = w if across else h
    bar = int(span * (0.04 + 0.14 * float(torch.rand((), generator=g))))
    keep = torch.zeros(span, dtype=torch.bool)
    keep[bar: span - bar] = True
    keep = keep.view(1, 1, 1, w) if across else keep.view(1, 1, h, 1)
    return torch.where(keep, x, -1.0), torch.where(keep, y, -1.0)


# A 3×5 bitmap font, rows top to bottom: enough for the words and numbers of a HUD.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "A": "010101111101101", "C": "011100100100011",
    "E": "111100110100111", "G": "011100101101011", "H": "101101111101101", "I": "111010010010111",
    "L": "100100100100111", "M": "101111111101101", "N": "110101101101101", "O": "010101101101010",
    "P": "110101110100100", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "V": "101101101101010", "Y": "101101010010010", " ": "000000000000000", ":": "000010000010000",
}
_WORDS = ("SCORE", "LIVES", "HP", "TIME", "LEVEL", "AMMO", "COINS", "STAGE", "HI")


def text_mask(text: str, scale: int) -> torch.Tensor:
    """(5·scale, 4·len·scale) bool: `text` in the bitmap font, one blank column after each glyph."""
    glyphs = [torch.tensor([int(b) for b in _GLYPHS[ch]], dtype=torch.bool).view(5, 3) for ch in text]
    row = torch.cat([torch.cat([gl, torch.zeros(5, 1, dtype=torch.bool)], 1) for gl in glyphs], 1)
    return row.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def draw_hud(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One to three HUD elements at fixed places (a counter, a bar, a panel), drawn into input and target alike;
    a counter's number changes every few frames, as a score does."""
    frames, _, h, w = x.shape
    x, y = x.clone(), y.clone()

    def rand(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    def colour() -> torch.Tensor:   # in [-1, 1], as the frames
        return torch.rand(3, generator=g).view(3, 1, 1) * 2 - 1

    for _ in range(int(torch.randint(1, 4, (), generator=g))):
        kind = int(torch.randint(3, (), generator=g))
        if kind == 0:   # a counter: WORD: number
            scale = int(torch.randint(1, 3, (), generator=g))
            word = _WORDS[int(torch.randint(len(_WORDS), (), generator=g))]
            value, every = int(torch.randint(0, 900, (), generator=g)), int(torch.randint(2, 9, (), generator=g))
            ink = colour()
            top, left = int(rand(0, 0.2) * h), int(rand(0, 0.5) * w)
            for t in range(frames):
                mask = text_mask(f"{word}:{value + t // every}", scale)[: h - top, : w - left]
                box = (slice(top, top + mask.shape[0]), slice(left, left + mask.shape[1]))
                for z in (x, y):
                    z[t, :, box[0], box[1]] = torch.where(mask, ink, z[t, :, box[0], box[1]])
        else:           # a bar (health, energy) or a panel, with a border
            bh, bw = max(3, int(rand(0.03, 0.08 if kind == 1 else 0.25) * h)), max(6, int(rand(0.15, 0.45) * w))
            if kind == 1:   # bars sit along the top or the bottom edge
                margin = int(rand(0, 0.1) * h)
                top = margin if rand(0, 1) < 0.5 else h - bh - margin
            else:
                top = int(rand(0, 1) * (h - bh))
            left = int(rand(0, 1) * (w - bw))
            fill, border, opacity = colour(), colour(), rand(0.6, 1.0)
            share = int(rand(0.1, 1.0) * bw) if kind == 1 else bw
            for z in (x, y):
                region = z[:, :, top: top + bh, left: left + bw]
                region[..., :share] = opacity * fill + (1 - opacity) * region[..., :share]
                for edge in (region[..., :1, :], region[..., -1:, :], region[..., :, :1], region[..., :, -1:]):
                    edge[:] = border
    return x, y
