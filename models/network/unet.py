"""Backbone v2: a convolutional U-Net at full resolution around a coarse video transformer, so that the picture can
draw the game's edges inside a token, not just between tokens.

Legend: B batch, F frames, K frames per chunk, C channels, H×W frame in pixels, L levels of the U-Net (level l is
at 1/2^l resolution, l = 0..L−1), T tokens per frame, D transformer width.

    structure  low-detail frame, G-buffers, warped history ──► structure encoder (convs, levels 0..L−1)
               (each droppable: zeroed, and a presence flag       runs once per frame: `prepare`, shared by
               per part tells the network what is missing)        every denoising step
                                                                          │ added at every level
    sample x_t ──► stem conv ──► [FiLM res block ──► down] × (L−1) ──► level L−1 (1/8) ──► 2×2 patches = tokens
                                                                                              │
               transformer at 1/16: adaLN from (noise level + style), 2D sin-cos positions, rotary time over
               frames, block-causal attention over chunks and a KV cache (the blocks of models.network.dit)
                                                                                              │
    x0 ◄── out conv ◄── [FiLM res block ◄── up ◄── + skip] × (L−1) ◄── level L−1 ◄── tokens back to cells

Every convolution works on one frame: frames meet only in attention, so a chunk's output depends on its own frames
and the cache, never on later ones (the student's causality), and the per-frame structure features can be computed
once and reused by every denoising step. Predicts x0, like every model of the project.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from models.io.config import above, at_least, one_of, within
from models.io.data import gbuffer_slice
from models.network.dit import (GBUFFER_CHANNELS, TEXT_DIM, Block, Conditioning, attend_cached, attend_clip,
                                cache_for, frame_modulation, modulate, sincos_2d)
from models.network.kv_cache import KVCache
from models.network.motion import HISTORY_CHANNELS
from models.network.precision import in_weight_precision

PRESENCE_FLAGS = 3  # low-detail frame, G-buffers, history: 1 where given, 0 where absent or dropped


_UV_START = gbuffer_slice("uv").start
_MATERIAL_START = gbuffer_slice("material").start
_GBUFFER_TOTAL = gbuffer_slice("material").stop   # every G-buffer channel there is
# Rows of the material embedding: the demo game's ids are 0 (sky) to 13; ids above the table share its last row.
MATERIAL_IDS = 16
# The uv gate is 1 + this · its weights (zero at the start): an optimizer step moves a gate this many times further
# than a plain weight. A pixel loss pays little for a faint grid on one material, so at the plain rate a gate moved
# by 0.1-0.2 in a whole 1,500-step run (docs/model.md).
UV_GATE_RATE = 10.0


@dataclass(frozen=True)
class UNetConfig:
    size: str = "S"
    frame_size: tuple[int, int] = (128, 128)  # (H, W) in pixels
    channels: int = 3
    widths: tuple[int, ...] = (16, 32, 64, 128)  # conv channels at levels 0..L−1 (full, 1/2, 1/4, 1/8 resolution)
    token_patch: int = 2  # cells of the last level per token side: tokens at 1/(2^(L−1)·token_patch) = 1/16
    hidden: int = 192
    depth: int = 6
    heads: int = 6
    mlp_ratio: float = 4.0
    chunk_frames: int = 2  # K: the student's chunk
    clip_frames: int = 8  # the teacher's clip
    rope_base: float = 100.0
    text_dim: int = TEXT_DIM
    space: str = "pixel"  # the U-Net always works on pixels; the name is shared with DiTConfig
    down: int = 1
    # G-buffer channels read, in the order of models.io.data.GBUFFERS: 9 = depth, normals, uv, AO, sun, material id;
    # 8 without the material; 7 without the sun too; 4 = depth and normals only (docs/model.md measures what each adds)
    gbuffer_channels: int = GBUFFER_CHANNELS
    # the position within the block face read as sin/cos of 2π·k·uv, k = 1..uv_harmonics, instead of its raw fraction:
    # continuous across block edges, and a block edge (neon night's outlines) is one threshold on cos 2πu; 0 reads
    # the raw fraction (the first format-2 models). docs/model.md measures it.
    uv_harmonics: int = 0
    # the first level the structure features are added at: 0 = every level down from full resolution (backbone
    # v2); len(widths) − 1 = only where the tokens are, as the DiT conditions (the structure-path ablation)
    structure_from_level: int = 0
    # width of the learned embedding the material id is read through (needed when gbuffer_channels reaches it): a
    # material is a category, not a quantity, and neon night colours each material's outline its own way
    material_embedding: int = 0
    # the uv waves scaled by a learned factor per material and wave (1 at the start, UV_GATE_RATE), so that a
    # material whose look owes nothing to the position within its block (water) could switch them off. Measured in
    # docs/model.md: it left the faint block grid on the water and the scores within noise; no named size uses it
    uv_material_gate: bool = False
    # space-to-depth at the full-resolution edge: the sample and the structure inputs enter pixel-unshuffled by this
    # factor (each u×u block of pixels as u²·C channels) and x0 leaves pixel-shuffled back, so level 0 works at
    # 1/u of the frame with wide layers, the shape the CPU's matrix units and a GPU's tensor cores run fast
    # (docs/runtime.md, "A student shaped for the matrix units"); 1 = level 0 at full resolution
    unshuffle: int = 1
    # channels of a residual 3×3 refinement of x0 at full resolution, after the shuffle (0: none): an unshuffled
    # student otherwise draws each u×u block's pixels from separate output channels, and a faint u-pixel pattern shows
    # (docs/runtime.md measures it); at full resolution on 3 channels it costs ~0.03 GFLOP a frame per 16 channels
    refine: int = 0

    def __post_init__(self) -> None:
        at_least(self, 1, "frame_size", "channels", "widths", "token_patch", "hidden", "depth", "heads",
                 "chunk_frames", "clip_frames", "text_dim", "down", "unshuffle")
        at_least(self, 0, "uv_harmonics", "structure_from_level", "material_embedding", "refine")
        within(self, "gbuffer_channels", 0, _GBUFFER_TOTAL)
        above(self, 0, "mlp_ratio", "rope_base")
        one_of(self, "space", ("pixel",))
        h, w = self.frame_size
        if h % self.token_size or w % self.token_size:
            raise ValueError(f"frame size {w}x{h} must be a multiple of the token size {self.token_size}")
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden {self.hidden} must split into {self.heads} heads of even width")
        if self.clip_frames % self.chunk_frames:
            raise ValueError(f"clip_frames {self.clip_frames} must be a multiple of chunk_frames {self.chunk_frames}")
        if not 0 <= self.structure_from_level < len(self.widths):
            raise ValueError(f"structure_from_level must be a level, 0..{len(self.widths) - 1}; "
                             f"got {self.structure_from_level}")
        if self.reads_material and self.material_embedding <= 0:
            raise ValueError(f"gbuffer_channels={self.gbuffer_channels} reads the material id, which needs "
                             f"material_embedding > 0 (its embedding width); got {self.material_embedding}")
        if self.uv_material_gate and not (self.reads_uv_waves and self.reads_material):
            raise ValueError("uv_material_gate scales the uv waves by material: it needs uv_harmonics > 0 and "
                             f"gbuffer_channels reaching the material id; got uv_harmonics={self.uv_harmonics}, "
                             f"gbuffer_channels={self.gbuffer_channels}")

    @property
    def reads_material(self) -> bool:
        return self.gbuffer_channels > _MATERIAL_START

    @property
    def reads_uv_waves(self) -> bool:
        return self.uv_harmonics > 0 and self.gbuffer_channels >= _UV_START + 2

    @property
    def uv_wave_channels(self) -> int:
        return 4 * self.uv_harmonics if self.reads_uv_waves else 0

    @property
    def structure_gbuffer_channels(self) -> int:
        """G-buffer channels the structure encoder reads once the uv pair is expanded into its harmonics and the
        material id into its embedding."""
        channels = self.gbuffer_channels
        if self.reads_uv_waves:
            channels += self.uv_wave_channels - 2
        if self.reads_material:
            channels += self.material_embedding - 1
        return channels

    @property
    def token_size(self) -> int:
        """Pixels per token side."""
        return self.unshuffle * 2 ** (len(self.widths) - 1) * self.token_patch

    @property
    def grid(self) -> tuple[int, int]:
        return self.frame_size[0] // self.token_size, self.frame_size[1] // self.token_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def sample_size(self) -> tuple[int, int]:
        return self.frame_size


# Named sizes: S trains on the 2-core CPU (6.1 M parameters); M is the GPU profile's (`make train-v2 PROFILE=gpu`:
# twice the widths and the transformer width, 24 M parameters, 48 MB in fp16); tiny is for tests. `student` is the
# streamed one-step student: S's transformer at half S's conv widths, 1.2 GFLOP a frame where S takes 3.2, inside
# the CPU runtime's 1.5 (docs/model.md, "Sizing the student"). `student_unshuffled` is the same student shaped for
# matrix units: pixel-unshuffled by 2, widths 32/64/128 from 64², the same transformer, and a 16-channel refinement
# at full resolution after the shuffle (docs/runtime.md measures it against the shipped shape).
# Every named size reads every G-buffer, uv as waves and the material through its embedding.
_READS = dict(gbuffer_channels=9, uv_harmonics=2, material_embedding=4)
SIZES: dict[str, dict] = {
    "tiny": dict(widths=(8, 8, 16), token_patch=2, hidden=32, depth=2, heads=2, frame_size=(64, 64), **_READS),
    "S": dict(widths=(16, 32, 64, 128), hidden=192, depth=6, heads=6, frame_size=(128, 128), **_READS),
    "M": dict(widths=(32, 64, 128, 256), hidden=384, depth=6, heads=6, frame_size=(128, 128), **_READS),
    "student": dict(widths=(8, 16, 32, 64), hidden=192, depth=6, heads=6, frame_size=(128, 128), **_READS),
    "student_unshuffled": dict(unshuffle=2, refine=16, widths=(32, 64, 128), hidden=192, depth=6, heads=6,
                               frame_size=(128, 128), **_READS),
}


def make_config(size: str, **overrides) -> UNetConfig:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    return UNetConfig(size=size, **{**SIZES[size], **overrides})


# ---------------------------------------------------------------------------------------------------------------
# Convolutional pieces; all work on frames flattened into the batch, (B·F, C, h, w)


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a residual; with `cond_dim`, FiLM from the per-frame condition (noise level +
    style) scales and shifts the features between them. The second convolution starts at zero (identity)."""

    def __init__(self, channels: int, cond_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels) if cond_dim else None
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None:
            scale, shift = self.film(F.silu(c)).chunk(2, -1)  # (B·F, channels) each
            h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return x + self.conv2(F.silu(h))


class StructureEncoder(nn.Module):
    """Low-detail frame, G-buffers, warped history and their presence flags -> features at every level."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        inputs = cfg.channels + cfg.structure_gbuffer_channels + HISTORY_CHANNELS + PRESENCE_FLAGS
        self.stem = nn.Conv2d(inputs * cfg.unshuffle ** 2, cfg.widths[0], 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(w) for w in cfg.widths)
        widths = cfg.widths
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.blocks[0](self.stem(x))
        features = [h]
        for down, block in zip(self.downs, self.blocks[1:]):
            h = block(down(h))
            features.append(h)
        return features


# ---------------------------------------------------------------------------------------------------------------
# The model


class UNetDiT(nn.Module):
    """x0-predicting video model: forward() runs a whole clip in either attention mode, step() one chunk of the
    block-causal student against a KVCache; `prepare` computes a conditioning's structure features once."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        d, widths = cfg.hidden, cfg.widths
        self.structure_encoder = StructureEncoder(cfg)
        self.material_embed = nn.Embedding(MATERIAL_IDS, cfg.material_embedding) if cfg.reads_material else None
        self.uv_gate = nn.Embedding(MATERIAL_IDS, cfg.uv_wave_channels) if cfg.uv_material_gate else None
        self.time_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.style_embed = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.absent_style = nn.Parameter(torch.zeros(d))
        pixels = cfg.channels * cfg.unshuffle ** 2   # the sample's channels at level 0
        self.stem = nn.Conv2d(pixels, widths[0], 3, padding=1)
        self.encoder = nn.ModuleList(ResBlock(w, d) for w in widths)
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:]))
        token_in = widths[-1] * cfg.token_patch ** 2
        self.token_in = nn.Linear(token_in, d)
        self.register_buffer("pos_embed", sincos_2d(cfg.grid, d), persistent=False)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.token_out = nn.Linear(d, token_in)
        self.ups = nn.ModuleList(nn.Conv2d(b, a, 3, padding=1) for a, b in zip(widths, widths[1:]))
        self.decoder = nn.ModuleList(ResBlock(w, d) for w in widths)
        self.out = nn.Conv2d(widths[0], pixels, 3, padding=1)
        self.refine = None
        if cfg.refine:
            self.refine = nn.Sequential(nn.Conv2d(cfg.channels, cfg.refine, 3, padding=1), nn.SiLU(),
                                        nn.Conv2d(cfg.refine, cfg.channels, 3, padding=1))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.absent_style, std=0.02)
        # adaLN-Zero and a zero output: the untrained model predicts x0 = 0 (the data mean)
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        if self.refine is not None:   # starts as the identity
            nn.init.zeros_(self.refine[-1].weight)
            nn.init.zeros_(self.refine[-1].bias)
        if self.uv_gate is not None:
            nn.init.zeros_(self.uv_gate.weight)  # every gate 1

    def identity_at_init(self) -> tuple[str, ...]:
        """Weights that leave the network's function unchanged at their initial values: `--init` from a checkpoint
        trained without them starts them fresh (fine-tuning with the new option) instead of refusing it."""
        return ("uv_gate.weight",) if self.uv_gate is not None else ()

    # -- conditioning -------------------------------------------------------------------------------------------

    def structure_inputs(self, cond: Conditioning, b: int, f: int, device: torch.device, dtype: torch.dtype
                         ) -> torch.Tensor:
        """(B·F, inputs, H, W), channels-last: every structure part, zero where absent or dropped, and a presence
        flag each. Written part by part into one channels-last buffer: a concatenation and then a change of memory
        format would move the 28 channels twice (docs/runtime.md)."""
        h, w = self.cfg.frame_size
        gb_channels = self.cfg.gbuffer_channels
        gbuffers = cond.gbuffers
        if gbuffers is not None and gbuffers.shape[2] < gb_channels:
            gbuffers = None  # the game hands over fewer buffers than this model reads: it reads them as absent
        elif gbuffers is not None:
            gbuffers = self.structure_gbuffers(gbuffers[:, :, :gb_channels])
        parts = ((cond.low, cond.keep_low, self.cfg.channels),
                 (gbuffers, cond.keep_gbuffers, self.cfg.structure_gbuffer_channels),
                 (cond.history, cond.keep_history, HISTORY_CHANNELS))
        total = sum(channels for *_, channels in parts) + PRESENCE_FLAGS
        out = torch.empty(b * f, total, h, w, device=device, dtype=dtype, memory_format=torch.channels_last)
        flags = torch.zeros(b, PRESENCE_FLAGS, device=device, dtype=dtype)
        start = 0
        for i, (tensor, keep, channels) in enumerate(parts):
            part = out[:, start:start + channels]
            start += channels
            if tensor is None:
                part.zero_()
                continue
            part.copy_(tensor.flatten(0, 1))
            if keep is None:
                flags[:, i] = 1
            else:
                flags[:, i] = keep.to(dtype)
                part.mul_(flags[:, i].repeat_interleave(f).view(b * f, 1, 1, 1))
        out[:, start:] = flags.repeat_interleave(f, 0)[:, :, None, None]
        return out

    def structure_gbuffers(self, gbuffers: torch.Tensor) -> torch.Tensor:
        """(B, F, gbuffer_channels, H, W) in the training encoding -> (B, F, structure_gbuffer_channels, H, W): the
        uv pair as waves (periodic_uv), scaled by the material's gate when the config has one, the material id (the
        last channel) as its learned embedding."""
        gbuffers = periodic_uv(gbuffers, self.cfg)
        if self.material_embed is None:
            return gbuffers
        ids = gbuffers[:, :, -1].round().long().clamp(0, MATERIAL_IDS - 1)  # (B, F, H, W)
        if self.uv_gate is not None:
            waves = slice(_UV_START, _UV_START + self.cfg.uv_wave_channels)
            gate = 1 + UV_GATE_RATE * self.uv_gate(ids).movedim(-1, 2).to(gbuffers.dtype)  # (B, F, waves, H, W)
            gbuffers = torch.cat([gbuffers[:, :, :waves.start], gbuffers[:, :, waves] * gate,
                                  gbuffers[:, :, waves.stop:]], 2)
        embedded = self.material_embed(ids).movedim(-1, 2).to(gbuffers.dtype)  # (B, F, E, H, W)
        return torch.cat([gbuffers[:, :, :-1], embedded], 2)

    @in_weight_precision
    def prepare(self, cond: Conditioning, b: int | None = None, f: int | None = None) -> Conditioning:
        """`cond` with its structure features computed (once per frame): every denoising step then reuses them.
        `b` and `f` give the batch and frame count when no structure part is there to tell them."""
        if cond.structure is not None:
            return cond
        if b is None or f is None:
            given = next((t for t in (cond.low, cond.gbuffers, cond.history) if t is not None), None)
            if given is None:
                raise ValueError("prepare() needs the batch and frame count when no structure part is given")
            b, f = given.shape[:2]
        weight = self.stem.weight
        inputs = to_level0(self.structure_inputs(cond, b, f, weight.device, weight.dtype), self.cfg.unshuffle)
        features = self.structure_encoder(inputs)
        return replace(cond, structure=[x.view(b, f, *x.shape[1:]) for x in features])

    # -- the two halves of the U-Net ------------------------------------------------------------------------------

    def encode(self, x_t: torch.Tensor, c: torch.Tensor, structure: list[torch.Tensor]
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x_t (B, F, C, H, W) -> tokens (B, F, T, D) and the skips of every level (B·F, w, h, w)."""
        b, f = x_t.shape[:2]
        cf = c.flatten(0, 1)
        h = self.stem(to_level0(x_t.flatten(0, 1), self.cfg.unshuffle))
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                h = self.downs[level - 1](h)
            if level >= self.cfg.structure_from_level:
                h = h + structure[level].flatten(0, 1)
            h = block(h, cf)
            skips.append(h)
        p = self.cfg.token_patch
        n, ch, hh, ww = h.shape
        cells = h.view(n, ch, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5).reshape(n, -1, ch * p * p)
        tokens = self.token_in(cells).view(b, f, -1, self.cfg.hidden) + self.pos_embed
        return tokens, skips

    def decode(self, tokens: torch.Tensor, c: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Final tokens (B, F, T, D) and the skips -> x0 (B, F, C, H, W)."""
        b, f = tokens.shape[:2]
        shift, scale = self.final_modulation(F.silu(c)).chunk(2, -1)
        cells = self.token_out(modulate(self.final_norm(tokens), shift, scale))  # (B, F, T, w·p·p)
        p, (gh, gw) = self.cfg.token_patch, self.cfg.grid
        ch = self.cfg.widths[-1]
        h = cells.view(b * f, gh, gw, ch, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b * f, ch, gh * p, gw * p)
        h = h.contiguous(memory_format=torch.channels_last)
        cf = c.flatten(0, 1)
        for level in range(len(self.decoder) - 1, -1, -1):
            if level < len(self.decoder) - 1:
                h = self.ups[level](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = self.decoder[level](h + skips[level], cf)
        x0 = self.out(F.silu(h))   # (B·F, C·u², H/u, W/u)
        if self.cfg.unshuffle > 1:
            x0 = F.pixel_shuffle(x0, self.cfg.unshuffle)   # (B·F, C, H, W)
        if self.refine is not None:
            x0 = x0 + self.refine(x0)
        return x0.reshape(b, f, self.cfg.channels, *self.cfg.frame_size)

    # -- whole clips and chunks -------------------------------------------------------------------------------

    @in_weight_precision
    def forward(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: Conditioning,
                mode: str = "bidirectional") -> torch.Tensor:
        """x_t (B, F, C, H, W) at noise levels sigma (B, F) -> predicted x0 (B, F, C, H, W)."""
        b, f = x_t.shape[:2]
        cond = self.prepare(cond, b, f)
        c = frame_modulation(self, sigma, cond)
        x, skips = self.encode(x_t, c, cond.structure)
        return self.decode(attend_clip(self.blocks, self.cfg, x, c, mode), c, skips)

    def new_cache(self, batch: int, window_chunks: int, sink_chunks: int, device=None,
                  dtype: torch.dtype | None = None) -> KVCache:
        return cache_for(self.cfg, batch, window_chunks, sink_chunks, device or self.out.weight.device,
                         dtype or self.out.weight.dtype)

    @in_weight_precision
    def step(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, cache: KVCache,
             write: bool = False) -> torch.Tensor:
        """One block-causal chunk x_t (B, K, C, H, W) at sigma (B, K) against `cache` -> x0; with write=True its
        K/V are appended afterwards (as models.network.dit.VideoDiT.step)."""
        b, k = x_t.shape[:2]
        if k != self.cfg.chunk_frames:
            raise ValueError(f"step() takes one chunk of {self.cfg.chunk_frames} frames; got {k}")
        cond = self.prepare(cond, b, k)
        c = frame_modulation(self, sigma, cond)
        x, skips = self.encode(x_t, c, cond.structure)
        return self.decode(attend_cached(self.blocks, self.cfg, x, c, cache, write), c, skips)


def to_level0(x: torch.Tensor, unshuffle: int) -> torch.Tensor:
    """Full-resolution maps (N, C, H, W) -> level 0 of the U-Net, channels-last: (N, C·u², H/u, W/u) pixel-unshuffled
    (channel c·u² + i·u + j holds pixel (i, j) of each u×u block, torch's order), or unchanged for u = 1."""
    if unshuffle > 1:
        x = F.pixel_unshuffle(x, unshuffle)
    return x.contiguous(memory_format=torch.channels_last)


def periodic_uv(gbuffers: torch.Tensor, cfg: UNetConfig) -> torch.Tensor:
    """(B, F, gbuffer_channels, H, W) in the training encoding (uv = 2·fraction − 1) -> the structure encoder's
    G-buffer channels: the uv pair replaced by sin and cos of 2π·k·fraction for k = 1..cfg.uv_harmonics."""
    if not cfg.reads_uv_waves:
        return gbuffers
    angle = math.pi * (gbuffers[:, :, _UV_START:_UV_START + 2] + 1)  # 2π · fraction
    waves = [f(k * angle) for k in range(1, cfg.uv_harmonics + 1) for f in (torch.sin, torch.cos)]
    return torch.cat([gbuffers[:, :, :_UV_START], *waves, gbuffers[:, :, _UV_START + 2:]], 2)


def regress(model: UNetDiT, cond: Conditioning, b: int, f: int) -> torch.Tensor:
    """The backbone as a plain regression model: one pass with an empty sample (zeros at σ = 1), so the output
    comes from the structure and the style alone. x0 (B, F, C, H, W)."""
    x_t = torch.zeros(b, f, model.cfg.channels, *model.cfg.frame_size, device=model.out.weight.device)
    return model(x_t, torch.ones(b, f, device=x_t.device), cond, "bidirectional")


def regress_frames(model: UNetDiT, cond: Conditioning, b: int, frames: int) -> torch.Tensor:
    """`regress` over `frames` frames, a clip window (the model's clip_frames) at a time, as it was trained."""
    window = model.cfg.clip_frames
    return torch.cat([regress(model, cond.frames(slice(s, s + window)), b, window) for s in range(0, frames, window)],
                     1)


def flops_per_frame(cfg: UNetConfig, context_frames: int, steps: int = 1) -> float:
    """Forward FLOPs per frame (multiply-add = 2): the structure encoder once, then per denoising step the
    sample's encoder, the transformer (each frame attending to `context_frames` frames) and the decoder. Counts
    convolutions, linear layers and attention; norms and activations are left out (a few percent)."""
    u = cfg.unshuffle
    h, w = cfg.frame_size[0] // u, cfg.frame_size[1] // u   # level 0's resolution
    widths = cfg.widths

    def conv(cin: int, cout: int, level: int, kernel: int = 3) -> float:
        return 2.0 * cin * cout * kernel * kernel * (h >> level) * (w >> level)

    def res_block(ch: int, level: int) -> float:
        return 2 * conv(ch, ch, level)

    structure_in = cfg.channels + cfg.structure_gbuffer_channels + HISTORY_CHANNELS + PRESENCE_FLAGS
    structure = conv(structure_in * u * u, widths[0], 0) + sum(res_block(c, lvl) for lvl, c in enumerate(widths))
    structure += sum(conv(a, b, lvl + 1) for lvl, (a, b) in enumerate(zip(widths, widths[1:])))
    d, t = cfg.hidden, cfg.tokens_per_frame
    film = sum(2 * d * 2 * c for c in widths) * 2  # encoder and decoder blocks, per frame
    encoder = conv(cfg.channels * u * u, widths[0], 0) + sum(res_block(c, lvl) for lvl, c in enumerate(widths))
    encoder += sum(conv(a, b, lvl + 1) for lvl, (a, b) in enumerate(zip(widths, widths[1:])))
    decoder = sum(res_block(c, lvl) for lvl, c in enumerate(widths)) + conv(widths[0], cfg.channels * u * u, 0)
    decoder += sum(conv(b, a, lvl) for lvl, (a, b) in enumerate(zip(widths, widths[1:])))
    decoder += 2 * 2.0 * cfg.channels * cfg.refine * 9 * cfg.frame_size[0] * cfg.frame_size[1]   # at full resolution
    token_in = widths[-1] * cfg.token_patch ** 2
    per_token_block = 2 * (4 * d * d + 2 * cfg.mlp_ratio * d * d + 6 * d * d / t) + 2 * 2 * context_frames * t * d
    transformer = t * (cfg.depth * per_token_block + 2 * 2 * d * token_in) + 2 * 2 * d * d
    return float(structure + steps * (film + encoder + transformer + decoder))
