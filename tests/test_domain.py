"""Domain randomisation of recorded clips (models.recipe.domain): deterministic per seed, and the pairs stay exact."""

from __future__ import annotations

import pytest
import torch

from models.recipe.domain import (_WORDS, DomainConfig, blur, quantise_blocks, randomise_clip, subsample_chroma,
                                  text_mask)

NONE = DomainConfig(**{name: 0.0 for name in DomainConfig.__dataclass_fields__})


def clip(seed: int = 0, frames: int = 4, size: int = 32):
    """A small clip: two flat materials split down the middle, shaded, and a target unlike the input."""
    g = torch.Generator().manual_seed(seed)
    material = torch.zeros(frames, 1, size, size, dtype=torch.long)
    material[..., size // 2:] = 7
    shade = torch.linspace(0.5, 1.0, size).view(1, 1, size, 1)
    low = torch.where(material == 7, torch.tensor([0.2, 0.6, 0.3]).view(1, 3, 1, 1),
                      torch.tensor([0.5, 0.7, 0.9]).view(1, 3, 1, 1)) * shade * 2 - 1
    target = torch.rand(frames, 3, size, size, generator=g) * 2 - 1
    return low.expand(frames, 3, size, size).contiguous(), target, material


def test_the_same_seed_gives_the_same_clip_and_another_seed_another():
    low, target, material = clip()
    a = randomise_clip(low, target, material, seed=5)
    b = randomise_clip(low, target, material, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(randomise_clip(low, target, material, seed=6)[0], a[0])
    assert torch.equal(low, clip()[0])   # the recorded clip is not changed in place


@pytest.mark.parametrize("seed", range(8))
def test_palette_and_capture_artefacts_leave_the_target_exact(seed):
    """Only the input's look changes: the target is the recorded reference, bit for bit, and stays in range."""
    low, target, material = clip()
    cfg = DomainConfig(palette=1.0, blur=0.5, rescale=0.5, chroma=0.5, blocks=0.5, noise=0.5, letterbox=0.0,
                       hud=0.0)
    x, y = randomise_clip(low, target, material, seed, cfg)
    assert torch.equal(y, target)
    assert x.shape == low.shape and x.min() >= -1 and x.max() <= 1
    assert not torch.allclose(x, low)


def test_a_palette_maps_each_material_through_one_colour_map():
    """Pixels of one material and one colour get one new colour; the two materials' maps differ."""
    low, target, material = clip()
    x, _ = randomise_clip(low, target, material, seed=3, cfg=DomainConfig(**{**NONE.__dict__, "palette": 1.0}))
    row = x[0, :, 10]                                   # one row: constant shade, both materials
    assert torch.allclose(row[:, :16], row[:, :1].expand(3, 16)) and torch.allclose(row[:, 16:], row[:, 16:17])
    assert not torch.allclose(row[:, 0], row[:, 31])
    assert torch.equal(x[0], x[3])                      # drawn once per clip: steady in time


@pytest.mark.parametrize("seed", range(6))
def test_letterbox_and_hud_are_drawn_alike_into_input_and_target(seed):
    """Overlays pass through the restyle: drawn over a target equal to the input they leave the two equal, and
    over the real target they change only the pixels they change in the input."""
    low, target, material = clip()
    cfg = DomainConfig(**{**NONE.__dict__, "letterbox": 0.5, "hud": 1.0})
    x, y = randomise_clip(low, low, material, seed, cfg)
    assert torch.equal(x, y) and not torch.equal(x, low)
    x, y = randomise_clip(low, target, material, seed, cfg)
    drawn = (x != low).any(1, keepdim=True).expand_as(x)
    assert torch.equal(y[~drawn], target[~drawn])


def test_letterbox_bars_are_black_in_both():
    low, target, material = clip()
    for seed in range(10):
        x, y = randomise_clip(low, target, material, seed, DomainConfig(**{**NONE.__dict__, "letterbox": 1.0}))
        bars = (x != low).any(1)
        assert bars.any() and torch.all(x.movedim(1, -1)[bars] == -1) and torch.all(y.movedim(1, -1)[bars] == -1)


def test_the_counter_changes_over_the_clip_and_every_word_has_glyphs():
    for word in _WORDS:
        assert text_mask(f"{word}:0123456789", 2).shape == (10, 8 * (len(word) + 11))
    changed = False
    for seed in range(20):
        low, target, material = clip(frames=16)
        x, _ = randomise_clip(low, target, material, seed, DomainConfig(**{**NONE.__dict__, "hud": 1.0}))
        changed |= not torch.equal(x[0], x[15])
    assert changed


def test_capture_artefacts_keep_what_they_should():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 3, 16, 16), 0.4)
    assert torch.allclose(blur(flat, 1.2), flat, atol=1e-6)
    assert torch.allclose(subsample_chroma(flat), flat, atol=1e-5)
    x = torch.rand(2, 3, 20, 24, generator=g)            # not a multiple of the 8×8 blocks
    assert torch.allclose(quantise_blocks(x, 1e-4), x, atol=5e-3)
    coarse = quantise_blocks(x, 0.2)
    assert coarse.shape == x.shape and (coarse - x).abs().mean() > 0.02
    sharp = torch.zeros(1, 3, 16, 16)
    sharp[..., 8:] = 1
    assert subsample_chroma(sharp)[0, :, 0, 7].allclose(torch.zeros(3), atol=1e-5)   # grey edges keep their luma
