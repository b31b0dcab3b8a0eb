"""Pixel space or latent space? Measures what each costs per frame on this machine and what the autoencoder loses.

`python -m models.evaluation.latent_space [--model RUN --data EVAL_DIR] [--json FILE]`

Both spaces give the transformer the same 64 tokens per 128×128 frame (pixel: 16×16 patches of RGB; latent: 2×2
patches of the 8×-down latents), so the transformer costs the same in both. What differs:
- latent space encodes every incoming low-detail frame and decodes every output frame (on the critical path),
  and its quality is capped by the autoencoder's reconstruction;
- pixel space only reshapes (patchify / unpatchify) and is exact.
With a trained autoencoder (--model RUN holding autoencoder.safetensors) the script also scores its reconstruction
PSNR on held-out frames. docs/model.md records the numbers and the decision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from models.io.atomic import write_atomic
from models.network.autoencoder import AEConfig, Autoencoder
from models.network.dit import Conditioning, VideoDiT, make_config, patchify, unpatchify


def median_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def conv_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Multiply-adds ×2 of every Conv2d for one call, counted with forward hooks."""
    total = [0.0]

    def hook(module: torch.nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total[0] += 2.0 * k * output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


@torch.no_grad()
def measure(size: int = 128, chunk: int = 2, model_dir: Path | None = None, data: Path | None = None,
            widths: tuple[int, ...] = AEConfig.widths) -> dict:
    torch.manual_seed(0)
    frames = torch.rand(chunk, 3, size, size) * 2 - 1
    result: dict = {"threads": torch.get_num_threads(), "resolution": f"{size}x{size}", "chunk_frames": chunk}

    ae = Autoencoder(AEConfig(widths=widths)).eval().to(memory_format=torch.channels_last)
    if model_dir is not None:
        from models.network.loading import load_autoencoder

        ae = load_autoencoder(model_dir).to(memory_format=torch.channels_last)
    x = frames.contiguous(memory_format=torch.channels_last)
    z = ae.encode(x).contiguous(memory_format=torch.channels_last)
    result["latent"] = {
        "encode_ms_per_frame": median_ms(lambda: ae.encode(x)) / chunk,
        "decode_ms_per_frame": median_ms(lambda: ae.decode(z)) / chunk,
        "encode_gflop_per_frame": conv_flops(ae.encoder, frames[:1]) / 1e9,
        "decode_gflop_per_frame": conv_flops(ae.decoder, z[:1].contiguous()) / 1e9,
        "parameters_M": sum(p.numel() for p in ae.parameters()) / 1e6,
    }
    video = frames[None]
    result["pixel"] = {
        "patchify_ms_per_frame": median_ms(lambda: patchify(video, 16)) / chunk,
        "unpatchify_ms_per_frame": median_ms(lambda: unpatchify(patchify(video, 16), 16, 3, (size // 16,) * 2)) / chunk,
    }

    dit = VideoDiT(make_config("S", frame_size=(size, size))).eval()
    cache = dit.new_cache(1, window_chunks=3, sink_chunks=1)
    cond = Conditioning(low=video, gbuffers=torch.zeros(1, chunk, 4, size, size), style=torch.zeros(1, 384))
    sigma = torch.full((1, chunk), 0.5)
    for _ in range(4):  # a full cache, as in steady state
        dit.step(video, sigma, cond, cache, write=True)
    result["transformer_S_step_ms_per_frame"] = median_ms(lambda: dit.step(video, sigma, cond, cache)) / chunk

    if model_dir is not None and data is not None:
        from models.io.data import ClipDataset
        from models.evaluation.metrics import psnr

        dataset = ClipDataset(data, clip_frames=8, stride=1 << 30)
        scores = []
        for i in range(len(dataset)):
            style = dataset[i]["style"]
            scores.append(float(psnr(ae(style.contiguous(memory_format=torch.channels_last)).clamp(-1, 1),
                                     style).mean()))
        result["latent"]["reconstruction_psnr"] = sum(scores) / len(scores)
        result["latent"]["reconstruction_clips"] = len(scores)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="run directory with a trained autoencoder")
    parser.add_argument("--data", type=Path, default=None, help="held-out clips to score its reconstruction on")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--widths", default="32,64,128",
                        help="autoencoder widths per level when no --model is given, e.g. 16,32,64 for a cheaper one")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    result = measure(args.size, model_dir=args.model, data=args.data, widths=widths)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_atomic(args.json, lambda tmp: Path(tmp).write_text(text + "\n"))


if __name__ == "__main__":
    main()
