"""The video transformer: one DiT-style network used as the bidirectional teacher and the block-causal student.

Called by the training recipe (models.recipe), evaluation and the streaming runtime. Built bottom-up: small layers
first, the model last; `DiTConfig` holds every size and is saved beside the weights, and `SIZES` names the presets.

Legend for shape comments: B batch, F frames, K frames per chunk, C channels, H×W frame (model space: pixels, or
latents for a latent-space model), T tokens per frame, L tokens in a sequence (F·T), D hidden width,
nh heads, hd head width.

How the pieces fit (docs/design.md "The model"):
- tokens: each frame is cut into p×p patches. Per token, the noisy sample, the clean structure channels (the
  low-detail frame and the G-buffers: depth + normals) are projected separately and summed, which equals one
  projection of their concatenation but lets a dropped group be replaced by a learned "absent" vector;
- 3D positions: a fixed 2D sin-cos embedding of the patch position is added to the tokens; time is a rotary
  embedding over the frame index inside attention, so cached keys can be moved to new positions (one rotation)
  when the cache's window rolls on;
- adaLN-Zero: every block is modulated per frame by (timestep embedding + style embedding), so each frame of a
  clip may carry its own noise level (needed for the student's chunks and the teacher's per-chunk noise);
- a per-cell head: the last layer emits a few feature channels per pixel (not the pixels themselves), and a tiny
  MLP shared by every pixel mixes them with that pixel's noisy value, low-detail colour and G-buffers. A linear
  16×16-patch output from a 192-wide token drew blurry blocks (docs/model.md); the head gets exact edges from the
  structure channels for about 30 MFLOP per 128×128 frame;
- attention modes: "bidirectional" (every frame sees the clip) and "block_causal" (a chunk of K frames sees itself
  and earlier chunks). The per-chunk `step` runs the same math against a KVCache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.io.config import above, at_least, one_of
from models.network.kv_cache import KVCache
from models.network.precision import in_weight_precision

AttentionMode = Literal["bidirectional", "block_causal"]
# log depth (1), view-space normals (3), uv (2), AO (1), sun (1): the first eight of models.io.data.GBUFFERS, what
# the first backbone-v2 models read (the material id after them came later)
GBUFFER_CHANNELS = 8
GEOMETRY_CHANNELS = 4  # the DiT reads the first four (depth and normals); backbone v2 may read all
TEXT_DIM = 384  # MiniLM sentence embedding width, see models.network.prompt


@dataclass(frozen=True)
class DiTConfig:
    size: str = "S"
    frame_size: tuple[int, int] = (128, 128)  # (H, W) in pixels: what the game renders for the model
    space: Literal["pixel", "latent"] = "pixel"
    down: int = 1  # pixels per model-space cell: 1 in pixel space, the autoencoder's factor in latent space
    channels: int = 3  # channels of the model-space sample (RGB, or the autoencoder's latent channels)
    patch: int = 16  # model-space cells per token side
    hidden: int = 192
    depth: int = 8
    heads: int = 6
    mlp_ratio: float = 4.0
    chunk_frames: int = 2  # K: the student's chunk; also the unit of the teacher's per-chunk noise levels
    clip_frames: int = 8  # F: the clip the teacher is trained and sampled on
    rope_base: float = 100.0  # rotary base over frame indices; positions stay below ~64 frames
    text_dim: int = TEXT_DIM
    head_channels: int = 12  # per-cell features the last layer emits for the per-cell head (see PixelHead)
    head_hidden: int = 32

    def __post_init__(self) -> None:
        at_least(self, 1, "frame_size", "down", "channels", "patch", "hidden", "depth", "heads", "chunk_frames",
                 "clip_frames", "text_dim", "head_channels", "head_hidden")
        above(self, 0, "mlp_ratio", "rope_base")
        one_of(self, "space", ("pixel", "latent"))
        h, w = self.frame_size
        cell = self.down * self.patch
        if h % cell or w % cell:
            raise ValueError(f"frame size {w}x{h} must be a multiple of down·patch = {cell}")
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden {self.hidden} must split into {self.heads} heads of even width")
        if self.clip_frames % self.chunk_frames:
            raise ValueError(f"clip_frames {self.clip_frames} must be a multiple of chunk_frames {self.chunk_frames}")

    @property
    def grid(self) -> tuple[int, int]:
        """Tokens per frame along (H, W)."""
        cell = self.down * self.patch
        return self.frame_size[0] // cell, self.frame_size[1] // cell

    @property
    def tokens_per_frame(self) -> int:
        gh, gw = self.grid
        return gh * gw

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def sample_size(self) -> tuple[int, int]:
        """(H, W) of the model-space sample."""
        return self.frame_size[0] // self.down, self.frame_size[1] // self.down


# Named sizes (DiT's registry). S fits the 2-core CPU budget at 128×128 (about 0.7 GFLOP per frame per forward,
# see flops_per_frame); M is for a CUDA GPU at 256×256; tiny is for tests.
SIZES: dict[str, dict] = {
    "tiny": dict(hidden=64, depth=2, heads=2, frame_size=(64, 64)),
    "S": dict(hidden=192, depth=8, heads=6, frame_size=(128, 128)),
    "M": dict(hidden=384, depth=12, heads=6, frame_size=(256, 256)),
}


def make_config(size: str, **overrides) -> DiTConfig:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    return DiTConfig(size=size, **{**SIZES[size], **overrides})


# ---------------------------------------------------------------------------------------------------------------
# Small pieces


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, F, C, H, W) -> (B, F, T, C·p·p), tokens in row-major patch order."""
    b, f, c, h, w = x.shape
    x = x.reshape(b, f, c, h // p, p, w // p, p)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, f, (h // p) * (w // p), c * p * p)


def unpatchify(tokens: torch.Tensor, p: int, channels: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, F, T, C·p·p) -> (B, F, C, H, W), the inverse of patchify."""
    b, f = tokens.shape[:2]
    gh, gw = grid
    x = tokens.reshape(b, f, gh, gw, channels, p, p)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, f, channels, gh * p, gw * p)


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding, (T, dim): half the channels encode the row, half the column."""
    gh, gw = grid
    quarter = dim // 4
    freqs = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows = torch.arange(gh, dtype=torch.float64)[:, None] * freqs  # (gh, dim/4)
    cols = torch.arange(gw, dtype=torch.float64)[:, None] * freqs  # (gw, dim/4)
    row_emb = torch.cat([rows.sin(), rows.cos()], -1)[:, None].expand(gh, gw, 2 * quarter)
    col_emb = torch.cat([cols.sin(), cols.cos()], -1)[None].expand(gh, gw, 2 * quarter)
    emb = torch.cat([row_emb, col_emb], -1).reshape(gh * gw, 4 * quarter)
    return F.pad(emb, (0, dim - 4 * quarter)).float()


def timestep_features(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """(...,) noise levels -> (..., dim) sinusoidal features of 1000·σ (DiT's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
    angles = (sigma.float() * 1000.0)[..., None] * freqs
    return torch.cat([angles.cos(), angles.sin()], -1)


def rotary_tables(frame_pos: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype = torch.float32
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (L, hd/2) of the rotary time embedding for tokens at frame positions frame_pos (L,); computed once
    per forward and shared by every layer."""
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=frame_pos.device, dtype=torch.float32) / head_dim))
    angles = frame_pos.to(torch.float32)[:, None] * freqs  # (L, hd/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs of x (..., L, hd) by the angles whose cos, sin are (L, hd/2) (or (hd/2,) for all)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


def shift_time(keys: torch.Tensor, frames: int, base: float) -> torch.Tensor:
    """Keys rotated for frame p -> the same keys rotated for frame p + frames (rotations compose by adding
    angles). The KV cache uses it when eviction moves its window one chunk earlier."""
    cos, sin = rotary_tables(torch.tensor([float(frames)], device=keys.device), keys.shape[-1], base, keys.dtype)
    return apply_rotary(keys, cos[0], sin[0])


def frame_positions(frames: int, tokens_per_frame: int, start: int = 0, device=None) -> torch.Tensor:
    """(frames·T,) frame index of every token, the first frame at `start`."""
    return torch.arange(start, start + frames, device=device).repeat_interleave(tokens_per_frame)


def block_causal_mask(frames: int, chunk_frames: int, tokens_per_frame: int, device=None) -> torch.Tensor:
    """(L, L) bool, True where a query token may attend a key token: key chunk <= query chunk."""
    chunk = torch.arange(frames, device=device).div(chunk_frames, rounding_mode="floor")
    chunk = chunk.repeat_interleave(tokens_per_frame)
    return chunk[:, None] >= chunk[None, :]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, F, T, D) modulated per frame by shift, scale (B, F, D)."""
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


class Attention(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden, 3 * cfg.hidden)
        self.proj = nn.Linear(cfg.hidden, cfg.hidden)
        # qk-norm keeps attention logits bounded, which small models trained fast with AdamW need.
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, L, D) -> q, k, v (B, nh, L, hd), q and k normalised, not yet rotated."""
        b, length, _ = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return self.q_norm(q), self.k_norm(k), v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None,
                past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, L, D) with rotary tables `rope` for its positions. `past` = cached (k, v) (B, nh, Lp, hd), keys
        already rotated for their positions, all before x's. Returns the output (B, L, D) and this input's
        (rotated k, v) for the cache."""
        b, length, d = x.shape
        q, k, v = self.project(x)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        k_all, v_all = k, v
        if past is not None and past[0].shape[2] > 0:
            k_all, v_all = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)  # (B, nh, Lp + L, hd)
        out = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)  # (B, nh, L, hd)
        return self.proj(out.transpose(1, 2).reshape(b, length, d)), (k, v)


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation per frame."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden, elementwise_affine=False, eps=1e-6)
        width = int(cfg.hidden * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, cfg.hidden))
        self.modulation = nn.Linear(cfg.hidden, 6 * cfg.hidden)

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None = None, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, F, T, D), c (B, F, D) -> (B, F, T, D) and this block's (k, v)."""
        b, f, t, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, -1)  # each (B, F, D)
        h = modulate(self.norm1(x), shift1, scale1).reshape(b, f * t, d)
        h, kv = self.attn(h, rope, mask, past)
        x = x + gate1[:, :, None] * h.view(b, f, t, d)
        x = x + gate2[:, :, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x, kv


@dataclass
class Conditioning:
    """What a frame is conditioned on besides its noisy sample. Any part may be None (absent at run time: screen
    capture has no G-buffers; guidance's unconditional branch has no style).

    low        (B, F, C, H, W)  the low-detail frame in model space (pixels, or its latents)
    gbuffers   (B, F, 9, Hpx, Wpx)  log depth, normals, uv, AO, sun and material id at full pixel resolution
               (fewer from a game that hands over a prefix of models.io.data.GBUFFERS)
    style      (B, 384)  MiniLM style embedding
    history    (B, F, 4, H, W)  the previous output warped to this frame and where that is valid (backbone v2 only)
    motion     (B, F, 2, H, W)  the game's motion to the previous frame in pixels: no network reads it; the
               student's sampler carries its history and noise along it (models.network.motion)
    keep_*     (B,) bool  training-time dropout: False replaces that sample's part by its "absent" embedding
    structure  per-level features of the structure parts, filled by the model's `prepare` (backbone v2) so every
               denoising step of a chunk reuses them; None until then
    """

    low: torch.Tensor | None = None
    gbuffers: torch.Tensor | None = None
    style: torch.Tensor | None = None
    keep_low: torch.Tensor | None = None
    keep_gbuffers: torch.Tensor | None = None
    keep_style: torch.Tensor | None = None
    history: torch.Tensor | None = None
    keep_history: torch.Tensor | None = None
    motion: torch.Tensor | None = None
    structure: list[torch.Tensor] | None = None

    def frames(self, index: slice) -> "Conditioning":
        """The same conditioning for a slice of frames (a chunk)."""
        def part(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[:, index]

        return replace(self, low=part(self.low), gbuffers=part(self.gbuffers), history=part(self.history),
                       motion=part(self.motion),
                       structure=None if self.structure is None else [part(x) for x in self.structure])


def _keep_mask(keep: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | float:
    """(B,) keep flags -> a 0/1 multiplier broadcast over `like` (B, ...); 1 when there is no dropout."""
    if keep is None:
        return 1.0
    return keep.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def _select(keep: torch.Tensor | None, present: torch.Tensor, absent: torch.Tensor) -> torch.Tensor:
    """present (B, ..., D) where keep, else the absent embedding (D,)."""
    if keep is None:
        return present
    mask = _keep_mask(keep, present)
    return present * mask + absent * (1 - mask)


class PixelHead(nn.Module):
    """Per-cell MLP: [token features, x_t, low-detail, G-buffers] at every cell -> x0 at that cell."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        inputs = cfg.head_channels + 2 * cfg.channels + GEOMETRY_CHANNELS
        self.mlp = nn.Sequential(nn.Linear(inputs, cfg.head_hidden), nn.SiLU(), nn.Linear(cfg.head_hidden, cfg.channels))

    def forward(self, features: torch.Tensor, x_t: torch.Tensor, low: torch.Tensor, gbuffers: torch.Tensor
                ) -> torch.Tensor:
        """All (B, F, *, H, W) at model-space resolution -> x0 (B, F, C, H, W)."""
        b, f, _, h, w = x_t.shape
        cells = torch.cat([features, x_t, low, gbuffers], 2).flatten(0, 1).flatten(2)  # (B·F, inputs, H·W)
        # The per-cell MLP as batched matrix products over channels-first maps: the same weights and result as the
        # Linear layers on channels-last cells, without transposing the maps in and out. Measured at 128x128 on
        # one CPU thread: 1.0 ms a pass, against 2.4 ms for the Linear layers and 4.5 ms for 1x1 convolutions (which
        # fall back to a slow path); every denoising pass of every chunk runs it.
        first, last = self.mlp[0], self.mlp[2]
        n = cells.shape[0]
        hidden = F.silu(torch.baddbmm(first.bias[None, :, None], first.weight[None].expand(n, -1, -1), cells))
        out = torch.baddbmm(last.bias[None, :, None], last.weight[None].expand(n, -1, -1), hidden)  # (B·F, C, H·W)
        return out.view(b, f, -1, h, w)


# ---------------------------------------------------------------------------------------------------------------
# The model


class VideoDiT(nn.Module):
    """x0-predicting video transformer. forward() runs a whole clip in either attention mode; step() runs one chunk
    of the block-causal student against a KVCache."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.hidden, cfg.patch
        pixel_patch = p * cfg.down
        self.x_embed = nn.Linear(cfg.channels * p * p, d)
        self.low_embed = nn.Linear(cfg.channels * p * p, d)
        self.gbuffer_embed = nn.Linear(GEOMETRY_CHANNELS * pixel_patch * pixel_patch, d)
        self.absent_low = nn.Parameter(torch.zeros(d))
        self.absent_gbuffers = nn.Parameter(torch.zeros(d))
        self.register_buffer("pos_embed", sincos_2d(cfg.grid, d), persistent=False)  # (T, D)
        self.time_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.style_embed = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.absent_style = nn.Parameter(torch.zeros(d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, cfg.head_channels * p * p)
        self.pixel_head = PixelHead(cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.absent_style, std=0.02)
        nn.init.normal_(self.absent_low, std=0.02)
        nn.init.normal_(self.absent_gbuffers, std=0.02)
        # adaLN-Zero: every residual branch and the output start at zero, so the untrained model is the identity
        # on its residual stream and its first prediction is x0 = 0 (the data mean).
        for block in self.blocks:
            nn.init.zeros_(block.modulation.weight)
            nn.init.zeros_(block.modulation.bias)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)
        nn.init.zeros_(self.pixel_head.mlp[-1].weight)
        nn.init.zeros_(self.pixel_head.mlp[-1].bias)

    # -- embedding --------------------------------------------------------------------------------------------

    def embed(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, F, T, D) and per-frame modulation c (B, F, D)."""
        cfg = self.cfg
        tokens = self.x_embed(patchify(x_t, cfg.patch))  # (B, F, T, D)
        if cond.low is None:
            tokens = tokens + self.absent_low
        else:
            tokens = tokens + _select(cond.keep_low, self.low_embed(patchify(cond.low, cfg.patch)), self.absent_low)
        if cond.gbuffers is None:
            tokens = tokens + self.absent_gbuffers
        else:
            g = self.gbuffer_embed(patchify(cond.gbuffers[:, :, :GEOMETRY_CHANNELS], cfg.patch * cfg.down))
            tokens = tokens + _select(cond.keep_gbuffers, g, self.absent_gbuffers)
        return tokens + self.pos_embed, frame_modulation(self, sigma, cond)

    def head(self, x: torch.Tensor, c: torch.Tensor, x_t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Final tokens (B, F, T, D) -> x0 (B, F, C, H, W)."""
        cfg = self.cfg
        shift, scale = self.final_modulation(F.silu(c)).chunk(2, -1)
        x = self.out(modulate(self.final_norm(x), shift, scale))  # (B, F, T, head_channels·p·p)
        features = unpatchify(x, cfg.patch, cfg.head_channels, cfg.grid)  # (B, F, head_channels, H, W)
        return self.pixel_head(features, x_t, *self.cell_structure(x_t, cond))

    def cell_structure(self, x_t: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """The low-detail frame and G-buffers per model-space cell, zero where absent or dropped."""
        b, f, _, h, w = x_t.shape
        low = torch.zeros_like(x_t) if cond.low is None else cond.low * _keep_mask(cond.keep_low, cond.low)
        if cond.gbuffers is None:
            gbuffers = x_t.new_zeros(b, f, GEOMETRY_CHANNELS, h, w)
        else:
            geometry = cond.gbuffers[:, :, :GEOMETRY_CHANNELS]
            gbuffers = geometry * _keep_mask(cond.keep_gbuffers, geometry)
            if self.cfg.down > 1:  # latent space: average the G-buffers over each latent cell
                gbuffers = F.avg_pool2d(gbuffers.flatten(0, 1), self.cfg.down).view(b, f, GEOMETRY_CHANNELS, h, w)
        return low, gbuffers

    @in_weight_precision
    def prepare(self, cond: Conditioning, b: int | None = None, f: int | None = None) -> Conditioning:
        """Nothing to precompute for this model (backbone v2 computes its structure features here)."""
        return cond

    # -- whole clips ------------------------------------------------------------------------------------------

    @in_weight_precision
    def forward(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: Conditioning,
                mode: AttentionMode = "bidirectional") -> torch.Tensor:
        """x_t (B, F, C, H, W) at noise levels sigma (B, F) -> predicted x0 (B, F, C, H, W)."""
        x, c = self.embed(x_t, sigma, cond)
        return self.head(attend_clip(self.blocks, self.cfg, x, c, mode), c, x_t, cond)

    # -- one chunk of a stream --------------------------------------------------------------------------------

    def new_cache(self, batch: int, window_chunks: int, sink_chunks: int, device=None,
                  dtype: torch.dtype | None = None) -> KVCache:
        """A cache for this model's sizes, on its device and in its dtype unless told otherwise."""
        return cache_for(self.cfg, batch, window_chunks, sink_chunks, device or self.out.weight.device,
                         dtype or self.out.weight.dtype)

    @in_weight_precision
    def step(self, x_t: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, cache: KVCache,
             write: bool = False) -> torch.Tensor:
        """One block-causal chunk: x_t (B, K, C, H, W) at sigma (B, K), attending to itself and every chunk in
        `cache` -> x0 (B, K, C, H, W). With write=True the chunk's K/V (at this input and noise level) are appended
        to the cache afterwards: call it on the clean chunk at σ = 0 (CausVid's refresh) or on the last denoising
        step's input (keeping that step's K/V saves a pass).

        Autograd: the cache is preallocated storage written in place, so gradients do not flow into cached K/V;
        when grad is enabled the cached views are detached copies (training rollouts treat the past as given)."""
        b, k = x_t.shape[:2]
        if k != self.cfg.chunk_frames:
            raise ValueError(f"step() takes one chunk of {self.cfg.chunk_frames} frames; got {k}")
        x, c = self.embed(x_t, sigma, cond)
        return self.head(attend_cached(self.blocks, self.cfg, x, c, cache, write), c, x_t, cond)


def cache_for(cfg, batch: int, window_chunks: int, sink_chunks: int, device: torch.device | str,
              dtype: torch.dtype) -> KVCache:
    """A KV cache sized for a model config (any with depth, heads, head_dim, chunk_frames, tokens_per_frame and
    rope_base: the DiT's and backbone v2's), whose keys re-rotate when its window rolls."""
    return KVCache(layers=cfg.depth, batch=batch, heads=cfg.heads, head_dim=cfg.head_dim,
                   chunk_frames=cfg.chunk_frames, tokens_per_frame=cfg.tokens_per_frame,
                   window_chunks=window_chunks, sink_chunks=sink_chunks, device=device, dtype=dtype,
                   shift_keys=lambda keys, frames: shift_time(keys, frames, cfg.rope_base))


# The transformer half, shared by the DiT and backbone v2: both hand it tokens (B, F, T, D) and the per-frame
# modulation c (B, F, D), and their configs name the same sizes (depth, heads, head_dim, chunk_frames,
# tokens_per_frame, rope_base).


def frame_modulation(model: nn.Module, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """Per-frame modulation c (B, F, D): the noise level's embedding plus the style's (or its learned absence), from
    the model's time_embed, style_embed and absent_style."""
    b = sigma.shape[0]
    c = model.time_embed(timestep_features(sigma, 256))  # (B, F, D)
    if cond.style is None:
        style = model.absent_style.expand(b, -1)
    else:
        style = _select(cond.keep_style, model.style_embed(cond.style), model.absent_style)  # (B, D)
    return c + style[:, None]


def attend_clip(blocks: nn.ModuleList, cfg, x: torch.Tensor, c: torch.Tensor, mode: str) -> torch.Tensor:
    """A whole clip's tokens x (B, F, T, D) through the transformer blocks: every frame sees the clip
    ("bidirectional", the teacher) or its own and earlier chunks ("block_causal", the student in training)."""
    f, t = x.shape[1], cfg.tokens_per_frame
    rope = rotary_tables(frame_positions(f, t, device=x.device), cfg.head_dim, cfg.rope_base, x.dtype)
    if mode == "bidirectional":
        mask = None
    elif mode == "block_causal":
        mask = block_causal_mask(f, cfg.chunk_frames, t, device=x.device)
    else:
        raise ValueError(f"unknown attention mode {mode!r}; use 'bidirectional' or 'block_causal'")
    for block in blocks:
        x, _ = block(x, c, rope, mask)
    return x


def attend_cached(blocks: nn.ModuleList, cfg, x: torch.Tensor, c: torch.Tensor, cache: KVCache,
                  write: bool) -> torch.Tensor:
    """One chunk's tokens x (B, K, T, D) through the transformer blocks, each attending to the chunk and its layer
    of `cache`; with write=True the chunk's K/V are appended afterwards. Cached frames sit at positions
    0..frames-1 (see KVCache), so the chunk comes right after them. Autograd: the cache is storage written in
    place, so when grad is enabled the cached views are detached copies (training rollouts treat the past as
    given)."""
    k, t = x.shape[1], cfg.tokens_per_frame
    rope = rotary_tables(frame_positions(k, t, start=cache.frames, device=x.device), cfg.head_dim, cfg.rope_base,
                         x.dtype)
    new_k, new_v = [], []
    for layer, block in enumerate(blocks):
        past = cache.view(layer)
        if torch.is_grad_enabled():
            past = (past[0].detach().clone(), past[1].detach().clone())
        x, (key, value) = block(x, c, rope, None, past)
        new_k.append(key)
        new_v.append(value)
    if write:
        cache.append(torch.stack(new_k).detach(), torch.stack(new_v).detach())
    return x


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_frame(cfg: DiTConfig, context_frames: int) -> float:
    """Forward FLOPs per frame (multiply-add = 2) when each frame attends to `context_frames` frames: the linear
    layers of every block, attention scores and mixing, and the token projections in and out."""
    t, d = cfg.tokens_per_frame, cfg.hidden
    p = cfg.patch
    token_in = cfg.channels * p * p * 2 + GEOMETRY_CHANNELS * (p * cfg.down) ** 2
    per_token_block = 2 * (4 * d * d + 2 * cfg.mlp_ratio * d * d) + 2 * 2 * context_frames * t * d
    per_token = cfg.depth * per_token_block + 2 * d * token_in + 2 * d * cfg.head_channels * p * p
    head_inputs = cfg.head_channels + 2 * cfg.channels + GEOMETRY_CHANNELS
    per_cell = 2 * (head_inputs * cfg.head_hidden + cfg.head_hidden * cfg.channels)
    h, w = cfg.sample_size
    return float(per_token * t + per_cell * h * w)
