"""Trained networks back from a model directory: a finished training run (the --out of `restyler train`) or a
shipped model (models/weights/<name>). Weights are cast to fp32, or to the precision asked for
(models.network.precision: bf16 where the hardware runs it fast), in eval mode.

Used by the training stages that start from earlier ones, by evaluation and by the runtime.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from models.io import checkpoint
from models.network.autoencoder import AEConfig, Autoencoder
from models.network.dit import DiTConfig, VideoDiT
from models.network.dit import flops_per_frame as dit_flops_per_frame
from models.network.precision import Precision
from models.network.streaming import StudentSampler
from models.network.unet import UNetConfig, UNetDiT
from models.network.unet import flops_per_frame as unet_flops_per_frame
from models.network.upsampler import Upsampler, UpsamplerConfig

# The recipe stage that writes each network, for the error that says how to get a missing one.
WRITTEN_BY = {"autoencoder": "autoencoder", "teacher": "teacher", "student_ode": "ode", "student": "dmd",
              "regression": "regression"}


def load_autoencoder(run: Path | str, device: torch.device | str = "cpu") -> Autoencoder:
    tensors, meta = checkpoint.load_checkpoint(run, "autoencoder",
                                               hint=f"train it first with `restyler train autoencoder --out {run}`")
    model = Autoencoder(checkpoint.config_from_json(AEConfig, meta.get("config"), f"{run}/autoencoder.json config"))
    checkpoint.load_into(model, tensors, f"{run}/autoencoder.safetensors")
    return model.to(device).eval()


def network_for(cfg: DiTConfig | UNetConfig) -> VideoDiT | UNetDiT:
    """A fresh network of the architecture `cfg` configures."""
    return UNetDiT(cfg) if isinstance(cfg, UNetConfig) else VideoDiT(cfg)


def flops_per_frame(cfg: DiTConfig | UNetConfig, context_frames: int, passes: int) -> float:
    """Forward FLOPs per output frame of a student making `passes` network passes a chunk, each frame attending to
    `context_frames` frames: the DiT's per pass, or backbone v2's with its structure encoder once per frame."""
    if isinstance(cfg, UNetConfig):
        return unet_flops_per_frame(cfg, context_frames, passes)
    return passes * dit_flops_per_frame(cfg, context_frames)


def architecture_of(cfg: DiTConfig | UNetConfig) -> dict[str, str]:
    """What a checkpoint's JSON says about its architecture: nothing for the DiT (every earlier checkpoint is one),
    "unet" for backbone v2."""
    return {"architecture": "unet"} if isinstance(cfg, UNetConfig) else {}


def network_config(run: Path | str, name: str, meta: dict[str, Any]) -> DiTConfig | UNetConfig:
    """The checked config of network `name` from its JSON `meta`: the DiT's, or backbone v2's when the JSON says
    "architecture": "unet". A CheckpointError names the field that is wrong."""
    config = UNetConfig if meta.get("architecture") == "unet" else DiTConfig
    return checkpoint.config_from_json(config, meta.get("config"), f"{run}/{name}.json config")


def load_network(run: Path | str, name: str, device: torch.device | str = "cpu", precision: Precision | None = None
                 ) -> tuple[VideoDiT | UNetDiT, dict[str, Any]]:
    """A trained video network (`teacher`, `student_ode`, `student`, `regression`) and its metadata, in eval mode,
    fp32 or in `precision`; the DiT, or backbone v2 when its JSON says "architecture": "unet"."""
    stage = WRITTEN_BY.get(name, name)
    tensors, meta = checkpoint.load_checkpoint(run, name, hint=f"train it with `restyler train {stage} --out {run}`")
    model = network_for(network_config(run, name, meta))
    checkpoint.load_into(model, {k: v.float() for k, v in tensors.items()}, f"{run}/{name}.safetensors")
    model = model.to(device).eval()
    return (model if precision is None else model.to(precision.dtype)), meta


def load_student(run: Path | str, name: str = "student", device: torch.device | str = "cpu",
                 precision: Precision | None = None) -> tuple[VideoDiT, StudentSampler, dict[str, Any]]:
    """A student and how it streams (the sampler saved with it)."""
    model, meta = load_network(run, name, device, precision)
    sampler = checkpoint.config_from_json(StudentSampler, meta.get("sampler"), f"{run}/{name}.json sampler")
    return model, sampler, meta


def student_meta(teacher_meta: dict[str, Any], cfg: DiTConfig | UNetConfig, sampler: StudentSampler
                 ) -> dict[str, Any]:
    """The JSON a student is saved with: its config and sampler, and the prompts and styles of its teacher."""
    return {"kind": "student", "config": asdict(cfg), **architecture_of(cfg), "prompts": teacher_meta["prompts"],
            "styles": teacher_meta["styles"], "sampler": asdict(sampler), "teacher_sampler": teacher_meta["sampler"]}


def load_upsampler(directory: Path | str, device: torch.device | str = "cpu") -> Upsampler | None:
    """The upsampler a model directory ships, or None when it has none."""
    if not checkpoint.exists(directory, "upsampler"):
        return None
    tensors, meta = checkpoint.load_checkpoint(directory, "upsampler")
    cfg = checkpoint.config_from_json(UpsamplerConfig, meta.get("config"), f"{directory}/upsampler.json config")
    model = Upsampler(cfg)
    checkpoint.load_into(model, {k: v.float() for k, v in tensors.items()}, f"{directory}/upsampler")
    return model.to(device).eval().to(memory_format=torch.channels_last)
