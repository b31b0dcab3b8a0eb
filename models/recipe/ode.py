"""Recipe stage `ode`: CausVid's ODE initialisation of the few-step block-causal student from the teacher.

The teacher's Euler sampler runs v2v trajectories on recorded clips (from the incoming frames noised to the
student's t*, conditioned on low-detail frames, G-buffers and a style prompt) and keeps the states at the student's
levels (RUN/ode_pairs/, made once and resumable). The student, a block-causal copy of the teacher's weights, learns
to map each kept state to the trajectory's clean endpoint. Writes RUN/student_ode.{safetensors,json}: the `no_dmd`
row of the evaluation, and where the dmd stage starts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from models.io.atomic import write_atomic
from models.io.data import ClipDataset, collate
from models.network import flow
from models.network.dit import VideoDiT
from models.network.loading import network_for, student_meta
from models.network.motion import chunk_motion, clip_history
from models.network.sampling import sample_teacher
from models.network.streaming import StudentSampler
from models.recipe.clips import RecipeData, student_grid
from models.recipe.loop import LOSS_BINS, Stage, StepInput, StepLoss, TrainConfig, TrainError, batch_indices, step_rng

PAIRS_DIR = "ode_pairs"
PAIRS_PER_SHARD = 8  # clips per teacher batch and per shard file


@dataclass(frozen=True)
class OdeConfig:
    """The ode stage's own settings."""

    # weight of a paired MSE against the recorded reference frames beside the teacher's endpoints (0: CausVid's
    # pure ODE regression); docs/distillation.md measures both
    regression: float = 0.0


def default_config() -> TrainConfig:
    # a short fine-tune of the teacher's weights: small LR, EMA from early on
    return TrainConfig(steps=400, batch=8, lr=1e-4, warmup=20, ema_decay=0.99, ema_start=50, sample_every=200,
                       checkpoint_every=50, drop_style=0.0)


# ---------------------------------------------------------------------------------------------------------------
# ODE pairs


def _pairs_settings(teacher_meta: dict[str, Any], sampler: StudentSampler, clip_frames: int, seed: int,
                    teacher_steps: int) -> dict[str, Any]:
    return {"teacher_step": teacher_meta.get("step"), "teacher_sampler": teacher_meta["sampler"],
            "teacher_steps": teacher_steps,
            "timesteps": list(sampler.timesteps), "shift": sampler.shift, "clip_frames": clip_frames, "seed": seed}


@torch.no_grad()
def make_ode_pairs(run: Path, clips: RecipeData, teacher: VideoDiT, teacher_meta: dict[str, Any],
                   sampler: StudentSampler, count: int, batch: int, seed: int, teacher_steps: int = 25,
                   rank: int = 0, world: int = 1) -> Path:
    """Write `count` v2v teacher trajectories to RUN/ode_pairs/, one shard per `batch` clips (rank r of `world`
    processes makes shards r, r + world, ...). The settings go to manifest.json before the first shard, so a
    rerun with other settings is refused and an interrupted generation resumes with the shards already there.
    Each shard holds, per clip:
        index, seed, start, style_index  which recorded window it came from (checked again when training reads it)
        style   (384,) the prompt embedding used
        states  (L, F, C, H, W) fp16 the trajectory at the student's levels (L = len(timesteps); the first is the
                start, the incoming frames noised to t*)
        target  (F, C, H, W) fp16 the trajectory's clean endpoint.
    `teacher_steps` sets the Euler grid over [0, 1] (only its part below t* runs): 25 instead of the teacher's 50
    halves the cost, the largest of the recipe on a CPU (docs/distillation.md)."""
    from tqdm import tqdm

    out = run / PAIRS_DIR
    out.mkdir(parents=True, exist_ok=True)
    settings = {**_pairs_settings(teacher_meta, sampler, clips.cfg.clip_frames, seed, teacher_steps),
                "clips": count, "batch": batch}
    manifest = out / "manifest.json"
    if manifest.is_file():
        if json.loads(manifest.read_text())["settings"] != settings:
            raise TrainError(f"{out} holds ODE pairs made with other settings; delete it or choose another --out")
    elif rank == 0:
        shards = [f"pairs_{n:04d}.safetensors" for n in range((count + batch - 1) // batch)]
        text = json.dumps({"settings": settings, "shards": shards}, indent=2) + "\n"
        write_atomic(manifest, lambda tmp: Path(tmp).write_text(text))
    indices = batch_indices(0, count, len(clips.dataset), seed + 7)
    levels = sampler.sigmas()[:-1]
    shift, guidance = teacher_meta["sampler"]["shift"], teacher_meta["sampler"]["guidance"]
    bar = tqdm(total=count, desc="ode pairs", dynamic_ncols=True, disable=rank != 0)
    for n, first in enumerate(range(0, count, batch)):
        name = f"pairs_{n:04d}.safetensors"
        rows = indices[first: first + batch]
        if n % world != rank or (out / name).is_file():
            bar.update(len(rows))
            continue
        rng = step_rng(seed, 10_000_000 + n)
        items = collate([clips.dataset[i] for i in rows])
        style = clips.prompt_embeddings(items["style_index"], torch.rand(len(rows), generator=rng))
        cond = clips.conditioning(items, style=style)
        incoming = clips.to_model_space(items["low"].to(clips.device))
        t_star = float(levels[0])
        start = flow.add_noise(incoming, torch.randn(incoming.shape, generator=rng).to(incoming.device),
                               torch.full(incoming.shape[:2], t_star, device=incoming.device))
        x, kept = sample_teacher(teacher, cond, tuple(incoming.shape), teacher_steps, shift, guidance, rng,
                                 clips.device, keep_sigmas=levels, start=start, start_sigma=t_star)
        states = torch.stack([kept[round(float(s), 6)] for s in levels], 1)
        tensors = {"index": torch.tensor(rows), "seed": items["seed"], "start": items["start"],
                   "style_index": items["style_index"], "style": style.float().cpu().contiguous(),
                   "states": states.half().cpu().contiguous(), "target": x.half().cpu().contiguous()}
        write_atomic(out / name, lambda tmp, tensors=tensors: save_file(tensors, tmp))
        bar.update(len(rows))
    bar.close()
    return out


class OdePairs(torch.utils.data.Dataset):
    """The recorded clip windows the pairs were made from, each with its stored trajectory states and target."""

    def __init__(self, pairs: Path, dataset: ClipDataset):
        manifest = json.loads((pairs / "manifest.json").read_text())
        self.dataset = dataset
        self.rows: list[dict[str, torch.Tensor]] = []
        for name in manifest["shards"]:
            if not (pairs / name).is_file():
                raise TrainError(f"{pairs / name} is missing; rerun `restyler train ode` with --resume to make it")
            shard = load_file(str(pairs / name))
            for i in range(len(shard["index"])):
                self.rows.append({k: v[i] for k, v in shard.items()})
        for row in self.rows[:: max(1, len(self.rows) // 16)]:  # the recorded data must still be what it was
            item = dataset.windows[int(row["index"]) // len(dataset.style_indices)]
            if (item[1], item[2]) != (int(row["seed"]), int(row["start"])):
                raise TrainError(f"the ODE pairs in {pairs} were made from other recorded data than "
                                 f"{dataset.root} holds now; delete {pairs} to make them again")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.rows[i]
        return {**self.dataset[int(row["index"])], "pair_style": row["style"], "states": row["states"].float(),
                "target": row["target"].float()}



class OdeStage(Stage):
    """Regress the block-causal student onto the teacher's clean endpoints from its kept states. Every chunk of a
    clip takes its own level (CausVid's ODE initialisation), so a chunk learns to denoise next to earlier chunks at
    any of the student's levels."""

    name = "ode"
    checkpoint_name = "student_ode"

    def __init__(self, clips: RecipeData, teacher: VideoDiT, teacher_meta: dict[str, Any], sampler: StudentSampler,
                 pairs: Path, student_cfg: Any = None, regression: float = 0.0):
        self.clips = clips
        self.teacher_meta = teacher_meta
        self.sampler = sampler
        self.cfg = clips.cfg
        self.dataset = OdePairs(pairs, clips.dataset)
        self.regression = regression
        student_cfg = student_cfg or teacher.cfg
        self.model = network_for(student_cfg).to(clips.device)
        if student_cfg == teacher.cfg:
            self.model.load_state_dict(teacher.state_dict())  # the student starts from the teacher's weights
        # a smaller student (backbone v2's `student` size) cannot take the teacher's weights: its convolutions
        # are narrower, so it starts fresh and the pairs alone teach it (docs/distillation.md measures the cost)
        self.device = clips.device

    def loss(self, step: StepInput) -> StepLoss:
        items, rng, rows, global_batch = step.items, step.rng, step.rows, step.global_batch
        k = self.model.cfg.chunk_frames
        states = items["states"].to(self.device)  # (b, L, F, C, H, W)
        b, levels, f = states.shape[:3]
        pick = torch.randint(levels, (global_batch, f // k), generator=rng)[rows].repeat_interleave(k, 1)  # (b, F)
        keep_low = (torch.rand(global_batch, generator=rng) >= self.cfg.drop_low)[rows]
        keep_gbuffers = (torch.rand(global_batch, generator=rng) >= self.cfg.drop_gbuffers)[rows]
        x_t = states.gather(1, pick.to(self.device)[:, None, :, None, None, None].expand(
            b, 1, f, *states.shape[3:])).squeeze(1)
        sigma = self.sampler.sigmas()[pick].to(self.device)
        # keep_style is explicit (always kept: the student bakes guidance in) so every parameter gets a gradient on
        # every rank, and the ranks' gradient averages line up
        draws = {"style": items["pair_style"], "keep_low": keep_low, "keep_gbuffers": keep_gbuffers,
                 "keep_style": torch.ones(b, dtype=torch.bool)}
        cond = self.clips.conditioning(items, draws)
        if self.sampler.history:  # teacher forcing: each chunk reads the teacher's endpoint of the chunk before
            motion, depth = chunk_motion(cond.motion, cond.gbuffers)
            cond = replace(cond, history=clip_history(items["target"].to(self.device), motion, depth, k),
                           keep_history=keep_gbuffers.to(self.device))  # no G-buffers, no motion: no history
        pred = self.model(x_t, sigma, cond, "block_causal")
        frame_loss = flow.flow_loss(pred, items["target"].to(self.device), sigma, self.cfg.loss_min_sigma)
        loss = frame_loss.mean()
        logged = {}
        if self.regression > 0:  # the recorded reference frames beside the teacher's endpoints
            paired = F.mse_loss(pred, self.clips.to_model_space(items["style"].to(self.device)))
            loss = loss + self.regression * paired
            logged["regression"] = paired.item()
        return StepLoss(loss, *flow.loss_by_sigma_bin(frame_loss.cpu(), sigma.cpu(), LOSS_BINS), logged=logged)

    def settings(self) -> OdeConfig:
        return OdeConfig(self.regression)

    def meta(self):
        return {**student_meta(self.teacher_meta, self.model.cfg, self.sampler), "ode": asdict(self.settings())}

    @torch.no_grad()
    def sample_grid(self, model, path):
        student_grid(self.clips, model, self.sampler, path)
