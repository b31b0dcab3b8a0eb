"""The restyling scores of docs/evaluation.md, computed on held-out clips already rendered to disk: the rows
`input`, `teacher`, `student`, `no_dmd`, `per_frame` and `student_rgb` with psnr / ssim / spectral / blockiness /
warp_ratio (overall, and per style in the details), the long-stream `drift`, and `style_switch_frames`.

Called by `restyler eval` (restyler/evaluate.py), which renders the held-out worlds with the game into recorded-data
directories first; this module only reads them (models/ knows nothing of the game). Returns the scores, the
details behind them, strips, a full-size side-by-side and each row's frames for the caller to write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from models.evaluation import metrics
from models.io import checkpoint
from models.io.data import ClipDataset, collate, denormalize_depth, gbuffers_of
from models.network.dit import Conditioning, VideoDiT
from models.network.prompt import PromptEncoder
from models.network.loading import load_autoencoder, load_network, load_student
from models.network.precision import Precision
from models.network.sampling import sample_teacher
from models.network.streaming import StudentSampler, held_chunks, recache, stream_chunk, stream_clip
from models.network.unet import UNetDiT, regress_frames

ROWS = ("input", "regression", "teacher", "student", "no_dmd", "per_frame", "student_rgb", "regression_rgb")
# Each row's noise comes from its own generator, seeded by this fixed number (not its place in ROWS), so adding a
# row never changes another row's numbers.
_NOISE_STREAM = {"input": 0, "teacher": 1, "student": 2, "no_dmd": 3, "per_frame": 4, "regression": 5,
                 "student_rgb": 6, "regression_rgb": 7}
# The network each row runs (a _Models field) and the checkpoint it comes from.
_NETWORK = {"regression": "regression", "teacher": "teacher", "student": "student", "no_dmd": "no_dmd",
            "per_frame": "student", "student_rgb": "student", "regression_rgb": "regression"}
_CHECKPOINT = {"no_dmd": "student_ode"}
METRICS = ("psnr", "ssim", "spectral", "blockiness", "warp_ratio")
FRAME_METRICS = METRICS[:4]  # scored per frame against the reference; warp_ratio is scored over a clip
DRIFT_WINDOW = 300  # frames at each end of the drift stream (docs/evaluation.md)
SWITCHES = ("reset", "recache", "keep")


def row_generator(seed: int, world: int, row: str) -> torch.Generator:
    """Noise of one row on one world, independent of which other rows run (ablations compare exactly)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + world * 101 + _NOISE_STREAM[row])


class EvalError(RuntimeError):
    """An evaluation that cannot run; the message says what is missing."""


@dataclass
class EvalResult:
    scores: dict[str, Any]  # the eval JSON of docs/design.md: rows, drift, style_switch_frames
    details: dict[str, Any]  # per style, per stream, timings and settings
    strips: list[tuple[str, torch.Tensor]] = field(default_factory=list)  # (name, image (3, H, W) in [-1, 1])
    side_by_side: torch.Tensor | None = None  # the first world, a row per style: each row's output, then reference
    videos: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # row -> frames (H, W, 3) uint8
    side_by_side_display: torch.Tensor | None = None  # --display: the first world upsampled, a line per style


@dataclass
class _Models:
    """The networks a model directory holds; a run before distillation has no student, a shipped model no
    student_ode, and only a run that trained it has the regression baseline."""

    teacher: VideoDiT | None
    teacher_sampler: dict[str, Any] | None
    student: VideoDiT | None
    sampler: StudentSampler | None
    no_dmd: VideoDiT | None
    regression: UNetDiT | None
    prompts: dict[str, list[str]]
    autoencoder: Any

    def has(self, row: str) -> bool:
        """Whether the directory holds the network `row` runs (the input row needs none)."""
        return row not in _NETWORK or getattr(self, _NETWORK[row]) is not None

    def any_network(self) -> Any:
        return next(n for n in (self.student, self.teacher, self.regression) if n is not None)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return frames if self.autoencoder is None else self.autoencoder.encode_video(frames)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.autoencoder is None else self.autoencoder.decode_video(x)).clamp(-1, 1)


def load_models(model_dir: Path, device: torch.device | str = "cpu", precision: Precision | None = None) -> _Models:
    """Every network `model_dir` holds, in `precision` (fp32 when None)."""
    if not any(checkpoint.exists(model_dir, name) for name in ("teacher", "student", "regression")):
        raise EvalError(f"{model_dir} holds no teacher, student or regression network to score; train them with "
                        f"`restyler train teacher|ode|dmd|regression --out {model_dir}`")
    metas: list[dict[str, Any]] = []
    teacher = teacher_meta = student = sampler = no_dmd = regression = None
    if checkpoint.exists(model_dir, "teacher"):
        teacher, teacher_meta = load_network(model_dir, "teacher", device, precision)
        metas.append(teacher_meta)
    if checkpoint.exists(model_dir, "student"):
        student, sampler, meta = load_student(model_dir, "student", device, precision)
        metas.append(meta)
    if checkpoint.exists(model_dir, "student_ode"):
        no_dmd, ode_sampler, _ = load_student(model_dir, "student_ode", device, precision)
        sampler = sampler or ode_sampler   # a run after its ODE stage only: the no_dmd row streams as it will
    if checkpoint.exists(model_dir, "regression"):
        regression, meta = load_network(model_dir, "regression", device, precision)
        metas.append(meta)
    latent = any(n is not None and n.cfg.space == "latent" for n in (teacher, student))
    autoencoder = load_autoencoder(model_dir, device) if latent else None
    return _Models(teacher, None if teacher_meta is None else teacher_meta["sampler"], student, sampler, no_dmd,
                   regression, metas[0]["prompts"], autoencoder)


def token_pixels(network: Any) -> int:
    """Pixels per token side of a network: the grid it would draw if its tokens showed."""
    cfg = network.cfg
    return cfg.token_size if hasattr(cfg, "token_size") else cfg.patch * cfg.down


def _frame_scores(out: torch.Tensor, ref: torch.Tensor, period: int) -> dict[str, torch.Tensor]:
    """Per-frame psnr / ssim / spectral / blockiness of (F, 3, H, W) clips; `period` is the model's token cell in
    pixels, the grid a patch-based model would draw."""
    return {"psnr": metrics.psnr(out, ref), "ssim": metrics.ssim(out, ref),
            "spectral": metrics.spectral_distance(out, ref), "blockiness": metrics.blockiness(out, period)}


@torch.no_grad()
def evaluate(model_dir: Path, clips_dir: Path, frames: int, drift_dir: Path | None = None,
             teacher_steps: int | None = None, sampler: StudentSampler | None = None, seed: int = 0,
             device: torch.device | str = "cpu", rows: tuple[str, ...] | None = None, switch: str = "reset",
             teacher_guidance: float | None = None, progress: Callable[[str], None] = print,
             precision: Precision | None = None) -> EvalResult:
    """Score every row on the first `frames` frames of every clip and style in `clips_dir`; the drift on the one
    clip of `drift_dir` (skipped when None); the style switch on every clip, each style switching to the next.
    `sampler` overrides the student's own (ablations of t*, steps and cache refresh at evaluation time), and
    `teacher_steps` / `teacher_guidance` the teacher's; `rows` limits the rows run (ablations skip the slow teacher),
    the others score None. By default every row whose network the model directory holds runs; the drift and the
    style switch need a student. `precision` is the networks' (models.network.precision; fp32 when None)."""
    unknown = [r for r in (rows or ()) if r not in ROWS]
    if unknown:
        raise EvalError(f"unknown rows {unknown}; the rows are {', '.join(ROWS)}")
    m = load_models(model_dir, device, precision)
    lacking = [r for r in (rows or ()) if not m.has(r)]
    if lacking:
        network = _CHECKPOINT.get(lacking[0], _NETWORK[lacking[0]])
        raise EvalError(f"{model_dir} holds no {network} for the {lacking[0]} row; train it with `restyler train` "
                        f"or leave the row out of --rows")
    if sampler is not None and m.student is not None:
        m.sampler = sampler
    window = (m.teacher or m.regression or m.student).cfg.clip_frames
    if frames % window or (m.student is not None and frames % m.student.cfg.chunk_frames):
        raise EvalError(f"--frames must be a multiple of the {window}-frame clip the models work on; got {frames}")
    data = ClipDataset(clips_dir, clip_frames=frames, stride=1 << 30)
    # a style the model never learnt is asked for by the game's own prompt for it (a model scored on a game it
    # was not trained on)
    prompts = {**(data.prompts or {}), **m.prompts}
    missing = [s for s in data.style_names if s not in prompts]
    if missing:
        raise EvalError(f"the model knows no prompts for styles {missing} of {clips_dir}, and the data lists none")
    lacking = [name for name in ("depth", "motion") if name not in data.buffers]
    if lacking:
        raise EvalError(f"{clips_dir} was recorded without {' and '.join(lacking)}: the warp ratio follows the "
                        "game's motion vectors and depth, so `restyler eval` needs a game that hands them over")
    frame_size = tuple(data.size[::-1])
    model_size = m.any_network().cfg.frame_size
    if frame_size != model_size:
        raise EvalError(f"the model works at {model_size[1]}x{model_size[0]} but {clips_dir} holds "
                        f"{frame_size[1]}x{frame_size[0]} frames")
    encoder = PromptEncoder.shared()
    style_table = encoder.encode([prompts[name][0] for name in data.style_names])  # the first training prompt
    steps = None if m.teacher is None else teacher_steps or m.teacher_sampler["steps"]
    guidance = None if m.teacher is None else (
        m.teacher_sampler["guidance"] if teacher_guidance is None else teacher_guidance)
    wanted = set(rows or ROWS) | {"input"}
    rows = [r for r in ROWS if r in wanted and m.has(r)]
    per_clip: dict[str, list[dict[str, float]]] = {r: [] for r in rows}
    temporal: dict[str, list[float]] = {r: [] for r in [*rows, "reference"]}
    seconds = {r: 0.0 for r in rows}
    result = EvalResult({}, {})
    result.videos = {r: [] for r in rows}
    n_styles = len(data.style_indices)
    period = token_pixels(m.any_network())
    reference_blockiness: list[float] = []

    for first in range(0, len(data), n_styles):  # one world (all its styles) per batch
        items = collate([data[i] for i in range(first, first + n_styles)])
        ref = items["style"]
        depth = denormalize_depth(items["depth"][:, :, 0])
        cond = Conditioning(low=m.encode(items["low"].to(device)), gbuffers=gbuffers_of(items, device),
                            style=style_table[items["style_index"]].to(device), motion=items["motion"].to(device))
        incoming = cond.low
        outputs: dict[str, torch.Tensor] = {"input": items["low"]}
        b = len(ref)
        world = int(items["seed"][0])
        # student_rgb and regression_rgb: what screen capture and video files give the model, the frames alone (no
        # G-buffers, so no motion either)
        rgb_only = replace(cond, gbuffers=None, motion=None)
        for row, given in (("regression", cond), ("regression_rgb", rgb_only)):
            if row in rows:
                tick = time.perf_counter()
                outputs[row] = regress_frames(m.regression, given, b, frames).clamp(-1, 1).cpu()
                seconds[row] += time.perf_counter() - tick
        tick = time.perf_counter()
        if "teacher" in rows:
            shape = (b, window, m.teacher.cfg.channels, *m.teacher.cfg.sample_size)
            outputs["teacher"] = torch.cat([m.decode(sample_teacher(
                m.teacher, cond.frames(slice(s, s + window)), shape, steps, m.teacher_sampler["shift"],
                guidance, row_generator(seed, world, "teacher"), device)[0]).cpu()
                for s in range(0, frames, window)], 1)
            seconds["teacher"] += time.perf_counter() - tick
        for row, model, no_context, given in (("student", m.student, False, cond), ("no_dmd", m.no_dmd, False, cond),
                                              ("per_frame", m.student, True, cond),
                                              ("student_rgb", m.student, False, rgb_only)):
            if row not in rows:
                continue
            tick = time.perf_counter()
            outputs[row] = m.decode(stream_clip(model, incoming, given, m.sampler, row_generator(seed, world, row),
                                                no_context=no_context)).cpu()
            seconds[row] += time.perf_counter() - tick
        for i in range(b):
            temporal["reference"].append(float(metrics.temporal_error(ref[i], items["motion"][i], depth[i])))
            reference_blockiness.append(float(metrics.blockiness(ref[i], period).mean()))
            for row in rows:
                scores = {k2: float(v.mean()) for k2, v in _frame_scores(outputs[row][i], ref[i], period).items()}
                per_clip[row].append({**scores, "style": data.style_names[int(items["style_index"][i])],
                                      "seed": int(items["seed"][i])})
                temporal[row].append(float(metrics.temporal_error(outputs[row][i], items["motion"][i], depth[i])))
                result.videos[row].extend(to_uint8(outputs[row][i]).unbind(0))
        if len(result.strips) < 4:
            result.strips.append((f"seed{int(items['seed'][0])}", _strip(outputs, ref, rows)))
        if result.side_by_side is None:
            result.side_by_side = _side_by_side(outputs, ref, rows)
        progress(f"eval: world {int(items['seed'][0])} done ({first // n_styles + 1} of {len(data) // n_styles})")

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    reference_error = mean(temporal["reference"])
    scores_rows: dict[str, Any] = {}
    for row in ROWS:
        if row not in rows:
            scores_rows[row] = {name: None for name in METRICS}
            continue
        scores_rows[row] = {name: mean([c[name] for c in per_clip[row]]) for name in FRAME_METRICS}
        scores_rows[row]["warp_ratio"] = mean(temporal[row]) / max(reference_error, 1e-8)
    by_style = {name: {row: {metric: mean([c[metric] for c in per_clip[row] if c["style"] == name])
                             for metric in FRAME_METRICS} for row in rows}
                for name in data.style_names}
    clips = len(per_clip["input"])
    result.details = {
        "clips": clips, "frames": frames, "worlds": sorted({c["seed"] for c in per_clip["input"]}),
        "teacher_steps": steps, "teacher_guidance": guidance,
        "sampler": None if m.sampler is None else {**asdict(m.sampler), "timesteps": list(m.sampler.timesteps)},
        "psnr_by_style": {name: {row: v["psnr"] for row, v in of_style.items()}
                          for name, of_style in by_style.items()},
        "scores_by_style": by_style,
        # the reference renderer's own score: what "no grid" looks like on these worlds
        "blockiness_period": period, "reference_blockiness": mean(reference_blockiness),
        "seconds_per_frame": {row: seconds[row] / (clips * frames) for row in rows if row != "input"},
        "rows_not_run": [r for r in ROWS if r not in rows],
    }
    result.details["switch"] = switch
    switch = [] if m.student is None else style_switch(m, data, frames, style_table,
                                                       torch.Generator().manual_seed(seed + 1), device, switch)
    result.details["style_switch"] = switch
    drift = {"psnr_first": None, "psnr_last": None, "frames": 0}
    if drift_dir is not None and m.student is not None:
        drift = long_stream_drift(m, drift_dir, style_table, data.style_names,
                                  torch.Generator().manual_seed(seed + 2), device, progress)
        # control: the same stream with the cache emptied every chunk cannot drift, so a change it shows too comes
        # from the scene (the world's first and last 300 frames differ), not from the stream's state
        result.details["drift_control_per_frame"] = long_stream_drift(
            m, drift_dir, style_table, data.style_names, torch.Generator().manual_seed(seed + 2), device, progress,
            no_context=True)
    # The worst stream, among those where the student tells the two styles apart at all (its control stream, with
    # the new prompt from the start, settles on the new style); None when one of those never switches.
    taken = [s["frames"] for s in switch if s["control_frames"] is not None]
    result.details["style_switch_streams_scored"] = f"{len(taken)} of {len(switch)}"
    result.scores = {"rows": scores_rows, "drift": drift,
                     "style_switch_frames": None if None in taken or not taken else max(taken)}
    return result


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) uint8, how frames are stored for videos."""
    return ((frames.clamp(-1, 1) + 1) * 127.5).round().byte().movedim(-3, -1)


def frames_to_switch(closer_to_new: list[bool]) -> int | None:
    """Frames after a style change until the output is closer to the new style's reference than to the old one's
    and stays so for the rest of the stream (1 = the first frame after the change); None if it never settles."""
    for j in range(len(closer_to_new)):
        if all(closer_to_new[j:]):
            return j + 1
    return None


def _side_by_side(outputs: dict[str, torch.Tensor], ref: torch.Tensor, rows: list[str]) -> torch.Tensor:
    """One world at full model resolution: a line per style at the clip's middle frame, with every row that ran
    (input first) and then the reference, side by side. What a player would see, not a thumbnail."""
    t = ref.shape[1] // 2
    lines = [torch.cat([*(outputs[r][s, t] for r in rows), ref[s, t]], -1) for s in range(ref.shape[0])]
    return torch.cat(lines, -2)


def _strip(outputs: dict[str, torch.Tensor], ref: torch.Tensor, rows: list[str]) -> torch.Tensor:
    """One world's first style: a row per output (then the reference), four frames across."""
    f = ref.shape[1]
    picks = sorted({0, f // 3, 2 * f // 3, f - 1})
    lines = [torch.cat([outputs[r][0, i] for i in picks], -1) for r in rows]
    lines.append(torch.cat([ref[0, i] for i in picks], -1))
    return torch.cat(lines, -2)


@torch.no_grad()
def style_switch(m: _Models, data: ClipDataset, frames: int, style_table: torch.Tensor, rng: torch.Generator,
                 device: torch.device | str, switch: str = "reset") -> list[dict[str, Any]]:
    """For every clip: stream it with its style's prompt, switch to the next style's prompt at the chunk boundary
    nearest the middle, and count the frames from the switch until the output is closer (PSNR) to the new style's
    reference than to the old one's, and stays closer (frames_to_switch). `switch` is what happens to the KV
    cache at the switch: "reset" empties it (the old style's frames stop pulling the output back), "recache"
    re-encodes the chunks it holds under the new prompt, "keep" leaves it."""
    if switch not in SWITCHES:
        raise EvalError(f"switch must be one of {', '.join(SWITCHES)}; got {switch!r}")
    k = m.student.cfg.chunk_frames
    n_styles = len(data.style_indices)
    switch_at = max(k, (frames // 2) // k * k)
    out = []
    for first in range(0, len(data), n_styles):
        items = collate([data[i] for i in range(first, first + n_styles)])
        old = items["style_index"]
        new = old.roll(-1)
        low = m.encode(items["low"].to(device))
        gb = gbuffers_of(items, device)
        motion = items["motion"].to(device)
        cache = m.student.new_cache(len(old), m.sampler.window_chunks, m.sampler.sink_chunks)
        noise = m.sampler.stream_noise(low[:, :k], rng)
        chunks = []
        for s in range(0, frames, k):
            style = style_table[old if s < switch_at else new].to(device)
            if s == switch_at and switch == "reset":
                cache.reset()
            if s == switch_at and switch == "recache":
                held = held_chunks(cache, [(x0, c) for c, x0 in enumerate(chunks)])  # (output, chunk index)
                recache(m.student, cache, [(x0, Conditioning(low=low[:, c * k:(c + 1) * k],
                                                             gbuffers=gb[:, c * k:(c + 1) * k], style=style))
                                           for x0, c in held])
            cond = Conditioning(low=low[:, s:s + k], gbuffers=gb[:, s:s + k], style=style, motion=motion[:, s:s + k])
            chunks.append(stream_chunk(m.student, low[:, s:s + k], cond, m.sampler, cache, rng, noise))
        output = m.decode(torch.cat(chunks, 1)).cpu()
        # control: the same world streamed with the new style from the start. If even that is not closer to the
        # new reference than to the old one, the two styles are not told apart there, whatever the switch does.
        control_cond = Conditioning(low=low, gbuffers=gb, style=style_table[new].to(device), motion=motion)
        control = m.decode(stream_clip(m.student, low, control_cond, m.sampler, rng)).cpu()
        ref_old, ref_new = items["style"], items["style"].roll(-1, 0)

        def closer_to_new(video: torch.Tensor, i: int) -> list[bool]:
            return [float(metrics.psnr(video[i, t], ref_new[i, t])) > float(metrics.psnr(video[i, t], ref_old[i, t]))
                    for t in range(switch_at, frames)]

        for i in range(len(old)):
            out.append({"seed": int(items["seed"][i]), "from": data.style_names[int(old[i])],
                        "to": data.style_names[int(new[i])], "frames": frames_to_switch(closer_to_new(output, i)),
                        "control_frames": frames_to_switch(closer_to_new(control, i)),
                        "frames_after_switch": frames - switch_at})
    return out


@torch.no_grad()
def long_stream_drift(m: _Models, drift_dir: Path, style_table: torch.Tensor, style_names: list[str],
                      rng: torch.Generator, device: torch.device | str, progress: Callable[[str], None],
                      no_context: bool = False) -> dict[str, Any]:
    """PSNR of one long stream's first and last DRIFT_WINDOW frames (the first style of the recorded clip),
    streamed through one KV cache in pieces so memory stays flat."""
    k = m.student.cfg.chunk_frames
    data = ClipDataset(drift_dir, clip_frames=k, stride=k, styles=[0])
    if len({seed for _, seed, _ in data.windows}) != 1:
        raise EvalError(f"{drift_dir} must hold exactly one recorded world for the drift stream")
    total = len(data) * k
    style = style_table[style_names.index(data.style_names[0])][None].to(device)
    cache = m.student.new_cache(1, m.sampler.window_chunks, m.sampler.sink_chunks)
    noise = None
    scores = []
    for i in range(len(data)):
        items = collate([data[i]])
        cond = Conditioning(low=m.encode(items["low"].to(device)), gbuffers=gbuffers_of(items, device),
                            style=style, motion=items["motion"].to(device))
        if noise is None:
            noise = m.sampler.stream_noise(cond.low, rng)
        out = m.decode(stream_clip(m.student, cond.low, cond, m.sampler, rng, cache=cache, noise=noise,
                                   no_context=no_context)).cpu()
        scores.extend(metrics.psnr(out[0], items["style"][0]).tolist())
        if (i + 1) % 500 == 0:
            progress(f"eval: drift stream {len(scores)} of {total} frames")
    window = min(DRIFT_WINDOW, len(scores) // 2)
    return {"psnr_first": sum(scores[:window]) / window, "psnr_last": sum(scores[-window:]) / window,
            "frames": len(scores)}


def markdown_table(result: EvalResult) -> str:
    """The scores as the Markdown table the README and notes quote."""
    lines = ["| row | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for row, values in result.scores["rows"].items():
        cells = ["n/a" if values[m] is None else f"{values[m]:.3f}" if m != "psnr" else f"{values[m]:.2f}"
                 for m in METRICS]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    drift = result.scores["drift"]
    if drift["frames"]:
        lines.append("")
        lines.append(f"drift over {drift['frames']} frames: PSNR {drift['psnr_first']:.2f} (first "
                     f"{DRIFT_WINDOW}) -> {drift['psnr_last']:.2f} (last {DRIFT_WINDOW})")
        control = result.details.get("drift_control_per_frame")
        if control:
            lines.append(f"the same stream with no temporal state (per_frame, cannot drift): "
                         f"{control['psnr_first']:.2f} -> {control['psnr_last']:.2f}")
    switch = result.scores["style_switch_frames"]
    scored = result.details.get("style_switch_streams_scored", "")
    if not result.details.get("style_switch"):
        lines.append("style switch: not measured (no student)")
    elif switch is not None:
        lines.append(f"style switch: {switch} frames (worst of {scored} streams whose styles the student tells apart)")
    else:
        lines.append("style switch: some streams never settled on the new style (see details)")
    d = result.details
    lines.append("")
    lines.append(f"{d['clips']} clips of {d['frames']} frames from worlds {d['worlds']}; teacher {d['teacher_steps']} "
                 f"steps, guidance {d['teacher_guidance']}; student sampler {d['sampler']}"
                 if d["sampler"] is not None or d["teacher_steps"] is not None
                 else f"{d['clips']} clips of {d['frames']} frames from worlds {d['worlds']}")
    lines.append(f"blockiness over {d['blockiness_period']}-pixel cells; the reference renderer scores "
                 f"{d['reference_blockiness']:.3f}")
    lines.append("")
    lines.append("psnr by style: " + "; ".join(
        f"{style} " + ", ".join(f"{row} {v['psnr']:.2f}" for row, v in of_style.items())
        for style, of_style in d["scores_by_style"].items()))
    display = result.scores.get("display")
    if display:
        w, h = display["display_size"]
        lines += ["", f"at {w}x{h} displayed (×{display['scale']}), against the reference drawn at that size:", "",
                  "| upsampling | psnr | ssim | blockiness | warp_ratio |", "|---|---|---|---|---|"]
        for row, v in display["rows"].items():
            lines.append(f"| {row} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['blockiness']:.3f} | "
                         f"{v['warp_ratio']:.3f} |")
    return "\n".join(lines) + "\n"
