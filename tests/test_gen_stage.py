"""`restyler train gen` (models.recipe.gen): teaching a finished student to generate without structure channels
while its restyling is held in place. Tiny models on synthetic clips; what the shipped model generates is in
tests/test_generate_shipped.py."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from models.io.data import collate
from models.network.loading import load_network, load_student
from models.recipe.clips import load_teacher
from models.recipe.gen import GenConfig, GenerationStage
from models.recipe.loop import StepInput, TrainError
from models.recipe.run import default_config, run_stage


def stage_for(data, run, gen_cfg: GenConfig) -> GenerationStage:
    cfg = replace(default_config("gen"), batch=4)
    clips, _, _ = load_teacher(run, data, cfg, torch.device("cpu"))
    student, meta = load_network(run, "student")
    return GenerationStage(clips, student, meta, gen_cfg, run)


def test_gen_writes_a_complete_model_that_records_where_it_started(tiny_run, tmp_path):
    data, run = tiny_run
    out = tmp_path / "gen"
    run_stage("gen", data, out, steps=2, batch=4, overrides={"sample_every": 1000}, init=run)
    for name in ("teacher", "student"):
        assert (out / f"{name}.safetensors").is_file()
    _, sampler, meta = load_student(out)
    assert sampler == load_student(run)[1]   # it restyles with the sampler it had
    assert meta["generation"]["init"]["run"] == str(run) and meta["step"] == 2
    log = json.loads((out / "logs" / "gen.jsonl").read_text().splitlines()[-1])
    assert log["step"] == 2 and log["loss"] > 0


def test_gen_needs_a_finished_student(tiny_run, tmp_path):
    data, _ = tiny_run
    with pytest.raises(TrainError, match="--init RUN"):
        run_stage("gen", data, tmp_path / "x", steps=1, batch=4)


def test_the_anchor_is_zero_where_the_student_still_restyles_as_it_did(tiny_run):
    """With every row anchoring (no generation rows), the starting student scores exactly zero: the anchor holds
    restyling to the student's own output, nothing else."""
    data, run = tiny_run
    stage = stage_for(data, run, GenConfig(generation_rows=0.0))
    items = collate([stage.dataset[i] for i in range(4)])
    result = stage.loss(StepInput(items, torch.Generator().manual_seed(0), slice(0, 4), 4, critic_step=None))
    assert result.loss.item() == 0.0 and result.bin_counts.sum() == 0


def test_draws_give_clean_context_then_noised_chunks(tiny_run):
    data, run = tiny_run
    stage = stage_for(data, run, GenConfig(generation_rows=1.0, still_context=1.0))
    k = stage.model.cfg.chunk_frames
    draws = stage.draw(64, torch.Generator().manual_seed(1))
    chunk_sigma = draws["sigma"][:, ::k]                       # (B, chunks)
    clean = chunk_sigma == 0
    # the clean chunks are a prefix of the clip (the context), and every clip generates at least its last chunk
    assert torch.equal(clean, clean.cummin(1).values) and not clean[:, -1].any()
    assert clean[:, 0].any() and (~clean[:, 0]).any()          # both text-to-video and a given start occur
    assert torch.equal(draws["still"], clean.sum(1) == 1)      # stills only as a lone first chunk
    levels = set(stage.levels.tolist())
    anchor_stage = stage_for(data, run, GenConfig(generation_rows=0.0))
    anchor_sigma = anchor_stage.draw(16, torch.Generator().manual_seed(2))["sigma"]
    assert set(anchor_sigma.flatten().tolist()) <= levels


def test_export_ships_the_measured_generation_sampler(tiny_run, tmp_path):
    """models.recipe.export --gen-steps/--gen-carry land in the student's JSON, and the generator uses them; a student
    that was never trained to generate refuses them."""
    from models.io import checkpoint
    from models.recipe.export import export_model
    from renderer.generate import VideoGenerator

    data, run = tiny_run
    gen_run = tmp_path / "gen"
    run_stage("gen", data, gen_run, steps=1, batch=4, overrides={"sample_every": 1000}, init=run)
    export_model(gen_run, tmp_path / "shipped", {"refresh": "last_step"}, {"steps": 3, "carry": 0.6})
    generator = VideoGenerator.from_pretrained(tmp_path / "shipped", "cpu")
    assert (generator.sampler.steps, generator.sampler.carry) == (3, 0.6)
    assert generator.bundle.sampler.refresh == "last_step"
    with pytest.raises(checkpoint.CheckpointError, match="train gen"):
        export_model(run, tmp_path / "other", None, {"steps": 3})
