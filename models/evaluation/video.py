"""Scores for a restyled video of a game the model never saw, where no reference frame exists (docs/evaluation.md,
"Games never seen"): how much of the input's structure survives, how much the picture flickers, above all where the
game itself stood still, and how far its colours moved toward the asked style's palette.

Every function takes videos as float tensors (T, 3, H, W) in [0, 1], the input already brought to the output's size
(`to_size`); `restyler eval-video` (restyler/eval_video.py) restyles a video and calls them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STILL = 1.5 / 255      # a pixel the game left unchanged: every channel within this of the frame before
FLICKER_FLOOR = 0.01   # flicker's denominator: an input this still counts as this much motion
HISTOGRAM_BINS = 8     # per channel: 8 × 8 × 8 colour bins


def from_uint8(frames) -> torch.Tensor:
    """uint8 frames (T, H, W, 3), an array or a list of (H, W, 3) arrays -> a video (T, 3, H, W) in [0, 1]."""
    import numpy as np

    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255


def to_size(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 3, h, w) at size = (w, h): area averaging when shrinking, bilinear when growing."""
    w, h = size
    if video.shape[-2:] == (h, w):
        return video
    shrink = h <= video.shape[-2] and w <= video.shape[-1]
    return F.interpolate(video, size=(h, w), mode="area" if shrink else "bilinear",
                         **({} if shrink else {"align_corners": False}))


def luma(video: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (T, H, W), Rec. 601 weights."""
    return 0.299 * video[:, 0] + 0.587 * video[:, 1] + 0.114 * video[:, 2]


def gradient_magnitude(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W) -> (T, H - 2, W - 2): central differences, the border left out."""
    dx = (frames[:, 1:-1, 2:] - frames[:, 1:-1, :-2]) / 2
    dy = (frames[:, 2:, 1:-1] - frames[:, :-2, 1:-1]) / 2
    return torch.sqrt(dx * dx + dy * dy)


def structure(inp: torch.Tensor, out: torch.Tensor) -> float:
    """Pearson correlation between the gradient magnitude of the input's and the output's luma, per frame, averaged
    over frames: 1 means every edge kept where it was. A frame with no edges at all on either side counts 0."""
    a, b = gradient_magnitude(luma(inp)).flatten(1), gradient_magnitude(luma(out)).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return float(((a * b).sum(1) / denominator).mean())


def flicker(inp: torch.Tensor, out: torch.Tensor) -> float:
    """mean |out_t − out_{t−1}| over mean |in_t − in_{t−1}| (floored at FLICKER_FLOOR): 1 changes as much as the
    input does."""
    changed_out = (out[1:] - out[:-1]).abs().mean()
    changed_in = (inp[1:] - inp[:-1]).abs().mean()
    return float(changed_out / changed_in.clamp_min(FLICKER_FLOOR))


def still_flicker(inp: torch.Tensor, out: torch.Tensor) -> float:
    """mean |out_t − out_{t−1}| over the pixels whose every channel the input kept within STILL: how much the
    picture boils where nothing moved. 0 when no pixel stood still."""
    still = ((inp[1:] - inp[:-1]).abs() <= STILL).all(1)           # (T-1, H, W)
    change = (out[1:] - out[:-1]).abs().mean(1)                      # (T-1, H, W)
    count = still.sum()
    return 0.0 if count == 0 else float((change * still).sum() / count)


def colour_histogram(video: torch.Tensor, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """(bins³,) the share of the video's pixels in each RGB bin."""
    idx = (video.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    flat = (idx[:, 0] * bins + idx[:, 1]) * bins + idx[:, 2]
    counts = torch.bincount(flat.flatten(), minlength=bins ** 3).float()
    return counts / counts.sum()


def style_gain(inp: torch.Tensor, out: torch.Tensor, style_frames: torch.Tensor) -> float:
    """1 − d(out) / d(in), d the L1 distance between a video's colour histogram and that of the style's reference
    frames: 0 no nearer the style's palette than the input, 1 on it, negative farther away."""
    target = colour_histogram(style_frames)
    d_in = (colour_histogram(inp) - target).abs().sum()
    d_out = (colour_histogram(out) - target).abs().sum()
    return float(1 - d_out / d_in.clamp_min(1e-12))


def match_palette(video: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """`video` recoloured channel by channel onto `palette`'s colours: each pixel's value replaced by the value of
    the same rank among the palette's (histogram matching of each channel, the classic colour transfer). Edges stay
    where they were; only the colours move. `restyler eval-video` scores it as `palette_match_style_gain`, the
    style_gain of a pure recolouring of the input."""
    out = torch.empty_like(video)
    n, m = video[:, 0].numel(), palette[:, 0].numel()
    for c in range(video.shape[1]):
        values = video[:, c].flatten()
        target = palette[:, c].flatten().sort().values
        rank = torch.empty_like(values, dtype=torch.long)
        rank[values.argsort(stable=True)] = torch.arange(n)
        # the palette value at the same quantile: index round(rank · (m − 1) / (n − 1)), in exact integers
        where = (rank * (m - 1) + (n - 1) // 2) // max(n - 1, 1)
        out[:, c] = target[where].view_as(video[:, c])
    return out


def score_video(inp: torch.Tensor, out: torch.Tensor, style_frames: torch.Tensor | None = None) -> dict[str, float]:
    """Every score of one restyled video; style_gain only with the style's reference frames."""
    inp = to_size(inp, (out.shape[-1], out.shape[-2]))
    scores = {"structure": structure(inp, out), "flicker": flicker(inp, out), "still_flicker": still_flicker(inp, out)}
    if style_frames is not None:
        scores["style_gain"] = style_gain(inp, out, style_frames)
    return scores
