"""Numeric precision of the video networks: fp32, or bf16 where the hardware multiplies bf16 matrices fast.

Every command that runs a network takes `--precision {auto,fp32,bf16}` and resolves it here once:
    auto  bf16 on a CUDA GPU and on a CPU whose matrix units run bf16 (Intel AMX: `amx_bf16` among the CPU flags,
          where a wide bf16 matmul is ~10x fp32); fp32 elsewhere, including CPUs whose only bf16 support is the
          AVX-512 dot product (`avx512_bf16`: ~2x on a wide matmul, but 1.07x on today's student, whose narrow
          full-resolution convolutions and elementwise work gain little; docs/runtime.md has the measurement)
    fp32  as trained; bit-identical to every number measured before precision was a setting
    bf16  asked for: runs anywhere (emulated, and slow, on a CPU with neither AMX nor AVX512-BF16)

Weights stay stored as they are (fp16 shipped, fp32 in runs) and are converted at load. A network whose weights are
bf16 runs each pass under autocast (`in_weight_precision`): matrix work in bf16 (the KV cache holds bf16 keys and
values, as the network writes them), and the x0 it hands back in fp32, so the sampler's noise arithmetic, the
warped history and the conversion to pixels stay fp32. Training keeps fp32 master weights and optimizer state and
runs each step's forward passes under `autocast`, its backward passes outside it (models/recipe/loop.py).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CPU_INFO = Path("/proc/cpuinfo")


class PrecisionError(ValueError):
    """A precision that is not one of PRECISIONS."""


@dataclass(frozen=True)
class Precision:
    """A resolved precision: its name ("fp32" or "bf16") and why it was picked (said once by the command)."""

    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def describe(self) -> str:
        return f"precision {self.name} ({self.reason})"


FP32 = Precision("fp32", "as stored")   # what a network runs at when nobody asked for a precision


def cpu_flags(cpuinfo: Path = CPU_INFO) -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (the first core's `flags` line); empty where unknown."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(asked: str, device: torch.device | str, flags: frozenset[str] | None = None) -> Precision:
    """`asked` (one of PRECISIONS) on `device` -> the precision to run at. `flags` are the CPU's (cpu_flags() when
    None; tests pass their own to play a machine with or without AMX)."""
    if asked not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}; got {asked!r}")
    device = torch.device(device)
    if asked != "auto":
        return Precision(asked, "asked for")
    if device.type == "cuda":
        return Precision("bf16", "auto: CUDA GPU")
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return Precision("bf16", "auto: the CPU has AMX bf16 matrix units")
    if "avx512_bf16" in flags:
        return Precision("fp32", "auto: the CPU has AVX512-BF16 but no AMX, where bf16 gains little; "
                                 "--precision bf16 forces it")
    return Precision("fp32", "auto: the CPU has no bf16 matrix units")


def weight_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of a network's floating-point weights (fp32 for a network without any)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def autocast(device: torch.device | str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`'s kind, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


T = TypeVar("T")


def in_weight_precision(method: Callable[..., T]) -> Callable[..., T]:
    """A network method that runs in its weights' precision: under autocast when they are bf16, with its tensor
    result back in fp32 (the callers' arithmetic stays fp32); untouched for fp32 weights. Nested calls (forward
    calling prepare) enter autocast once."""
    @functools.wraps(method)
    def wrapper(self: nn.Module, *args, **kwargs):
        dtype = weight_dtype(self)
        if dtype == torch.float32 or torch.is_autocast_enabled(_device_type(self)):
            return method(self, *args, **kwargs)
        with autocast(_device_type(self), dtype):
            out = method(self, *args, **kwargs)
        # x0 back in fp32; prepare()'s Conditioning keeps its bf16 features, which only the network reads
        return out.float() if isinstance(out, torch.Tensor) else out
    return wrapper


def _device_type(model: nn.Module) -> str:
    return next((p.device.type for p in model.parameters()), "cpu")
