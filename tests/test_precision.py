"""Precision as a setting (models.network.precision): what `auto` picks on which machine, bf16 against fp32 on the
same weights, the runtime against evaluation at each precision, and training under bf16 autocast.

Random tiny models (tests/conftest): the plumbing and the numerics do not depend on trained weights; the shipped
model's own bf16-against-fp32 agreement is in tests/test_shipped_model.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.network import precision as precision_module
from models.network.precision import PrecisionError, resolve_precision, weight_dtype
from renderer.engine import ModelError, StreamEngine, load_bundle
from renderer.runtime import StreamingRestyler

AMX = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"})
AVX512_BF16 = frozenset({"avx512f", "avx512_bf16"})
PLAIN = frozenset({"avx2", "fma"})


@pytest.mark.parametrize("flags, device, expected", [
    (AMX, "cpu", "bf16"),
    (AVX512_BF16, "cpu", "fp32"),   # ~1.1x on today's student, not worth bf16's rounding (docs/runtime.md)
    (PLAIN, "cpu", "fp32"),
    (frozenset(), "cpu", "fp32"),   # flags unknown (not Linux): the safe choice
    (PLAIN, "cuda", "bf16"),
])
def test_auto_is_bf16_only_where_matrix_units_run_it(flags, device, expected):
    """Guards against `auto` picking bf16 on a CPU that would emulate it, or fp32 on one with AMX."""
    resolved = resolve_precision("auto", device, flags)
    assert resolved.name == expected and resolved.reason.startswith("auto")


def test_an_asked_precision_wins_over_the_machine():
    assert resolve_precision("fp32", "cpu", AMX).name == "fp32"
    assert resolve_precision("bf16", "cpu", PLAIN).name == "bf16"
    assert resolve_precision("bf16", "cpu", PLAIN).dtype == torch.bfloat16


def test_an_unknown_precision_is_one_clear_error(random_model):
    with pytest.raises(PrecisionError, match="auto, fp32, bf16; got 'fp16'"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ModelError, match="precision must be one of"):
        load_bundle(random_model, precision="half")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse avx512_bf16 amx_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert precision_module.cpu_flags(info) == {"fpu", "sse", "avx512_bf16", "amx_bf16", "amx_tile"}
    assert precision_module.cpu_flags(tmp_path / "absent") == frozenset()


def test_a_machine_without_amx_streams_in_fp32_under_auto(random_model, monkeypatch):
    """What `restyler play` gets on a CPU without AMX: fp32 weights in the worker, said by the restyler."""
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AVX512_BF16)
    restyler = StreamingRestyler.from_pretrained(random_model, "cpu", worker="thread")
    assert restyler.precision.name == "fp32" and restyler.spec.precision == "fp32"
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: AMX)
    restyler = StreamingRestyler.from_pretrained(random_model, "cpu", worker="thread")
    assert restyler.precision.name == "bf16" and restyler.spec.precision == "bf16"
    assert "AMX" in restyler.precision.describe()


def test_forced_fp32_keeps_fp32_weights_and_bf16_converts_them(random_v2_model):
    """Weights are stored once (fp16 here) and converted at load to the precision asked for."""
    assert weight_dtype(load_bundle(random_v2_model, precision="fp32").student) == torch.float32
    bundle = load_bundle(random_v2_model, precision="bf16")
    assert weight_dtype(bundle.student) == torch.bfloat16 and bundle.precision.name == "bf16"
    engine = StreamEngine(bundle)
    assert engine.cache.k.dtype == torch.bfloat16   # the KV cache holds what the network writes


def _frames(model_dir, precision: str, packets) -> np.ndarray:
    engine = StreamEngine(load_bundle(model_dir, precision=precision), seed=5)
    engine.set_style("sunny summer day")
    return np.concatenate([engine.step(packets[i:i + 2]) for i in range(0, len(packets), 2)]).astype(np.float64)


def test_bf16_and_fp32_of_the_same_weights_agree(random_v2_model):
    """bf16 rounds each matrix product's inputs to 8 bits of mantissa; over a stream of chunks, with the KV cache
    and the warped history fed back, the picture of a random student must stay within a few grey levels of fp32
    (the shipped student's own agreement, in dB, is in tests/test_shipped_model.py)."""
    from tests.test_runtime import full_packet

    packets = [full_packet(i) for i in range(8)]
    fp32, bf16 = _frames(random_v2_model, "fp32", packets), _frames(random_v2_model, "bf16", packets)
    assert not np.array_equal(fp32, bf16)   # it did run in bf16
    assert np.abs(fp32 - bf16).mean() < 2.0   # grey levels of 255
    psnr = 10 * np.log10(255 ** 2 / np.mean((fp32 - bf16) ** 2))
    assert psnr > 35


def test_training_runs_its_forward_passes_in_bf16_and_keeps_fp32_weights(synthetic_clips, tmp_path):
    """Autocast with fp32 master weights: the log says bf16, the weights and optimizer state stay fp32, the loss
    is finite."""
    from safetensors.torch import load_file

    from demo_game.styles import STYLES
    from models.recipe.run import run_stage

    run = tmp_path / "run"
    lines: list[str] = []
    record = run_stage("regression", synthetic_clips, run, size="tiny", arch="unet", steps=2, batch=1,
                       prompts={s.name: list(s.prompts) for s in STYLES.values()}, precision="bf16",
                       overrides={"clip_frames": 2, "log_every": 1, "checkpoint_every": 2, "warmup": 1},
                       progress=lines.append)
    assert record["precision"] == "bf16" and np.isfinite(record["loss"])
    assert any("precision bf16" in line for line in lines)
    state = load_file(str(run / "state" / "regression.safetensors"))
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    logged = [json.loads(line) for line in (run / "logs" / "regression.jsonl").read_text().splitlines()]
    assert all(r["precision"] == "bf16" for r in logged)
