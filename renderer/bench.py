"""`restyler bench`: the speed numbers of docs/evaluation.md, measured the way a player experiences them.

A game loop (any frame producer: the CLI passes the demo game's step) runs at the game's rate beside the
StreamingRestyler, submitting every frame; from it come
    first_frame_latency_ms   after prepare() and a reset, from submitting a stream's first frame to its stylized
                             frame being shown (median of FIRST_FRAME_TRIALS; includes waiting for the chunk's
                             other frame, which the game produces one frame interval later)
    latency_p50/p95_ms       per frame, submit to shown, in steady state
    throughput_fps           stylized frames shown per second
    game_fps                 the game loop's own rate (capped at the game's target, as a game with vsync is)
    mfu                      the student's FLOPs per second over the measured matmul peak of this device at the
                             precision the student runs at (fp32 or bf16: both peaks are in the JSON)
and, on the same machine and resolution, the bidirectional teacher, which must hold a whole clip before it shows
its first frame. A per-stage profile of the student's step (measured alone, without the game) goes with the
details, so a missed target says where the milliseconds went.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bridge import FramePacket
from models.network.loading import flops_per_frame, load_upsampler
from models.network.precision import DTYPES, Precision
from renderer.engine import StreamEngine, load_bundle, resolve_device
from renderer.runtime import StreamingRestyler

FIRST_FRAME_TRIALS = 5
SETTLE_S = 1.0            # steady state starts this long after the stream starts
PROFILE_CHUNKS = 20
PROFILE_FRAMES = 16       # game frames kept for the profile and the teacher's clip (at least its clip length)
STYLE = "sunny summer day"

Producer = Callable[[], FramePacket]


@dataclass
class BenchResult:
    scores: dict[str, Any]            # exactly the bench keys of docs/design.md
    details: dict[str, Any] = field(default_factory=dict)


def matmul_peak_flops(device: torch.device, seconds: float = 1.0, n: int = 1024,
                      dtype: torch.dtype = torch.float32) -> float:
    """Sustained matmul FLOP/s of `device` (all its threads) in `dtype`: the denominator of MFU."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        count += 1
    _sync(device)
    return 2 * n ** 3 * count / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _GameLoop:
    """Calls the producer at `fps`, submits each frame, polls the display side as a game's render loop does."""

    def __init__(self, produce: Producer, restyler: StreamingRestyler, fps: float):
        self.produce, self.restyler, self.interval = produce, restyler, 1.0 / fps
        self.frame_s: list[float] = []
        self.submitted: dict[int, float] = {}

    def run(self, seconds: float, until: Callable[[], bool] | None = None) -> tuple[int, float]:
        """Loop for `seconds` (or until `until()`); returns (frames, elapsed seconds)."""
        frames, t0 = 0, time.monotonic()
        deadline = t0
        while time.monotonic() - t0 < seconds and not (until and until()):
            start = time.monotonic()
            packet = self.produce()
            self.restyler.submit(packet)
            self.restyler.latest_frame()
            self.frame_s.append(time.monotonic() - start)
            frames += 1
            deadline += self.interval
            time.sleep(max(0.0, deadline - time.monotonic()))
        return frames, time.monotonic() - t0


def _first_frame_ms(produce: Producer, restyler: StreamingRestyler, fps: float) -> float:
    restyler.reset()
    time.sleep(0.3)   # let the worker apply the reset before the stream's first frame
    first = produce()
    t_submit = time.monotonic()
    restyler.submit(first)
    loop = _GameLoop(produce, restyler, fps)
    time.sleep(1.0 / fps)
    seen: list[float] = []

    def arrived() -> bool:
        # Every frame of a chunk has the same latency (the pacer spaces them as they were submitted), so a poll
        # that comes late and sees the chunk's second frame still measures the first one.
        frame = restyler.latest_frame()
        if frame is not None and first.index <= frame.index < first.index + restyler.chunk_frames:
            seen.append(frame.t_due - (frame.t_submit - t_submit))
            return True
        return False

    loop.run(10.0, until=arrived)
    if not seen:
        raise RuntimeError(f"the stream's first frame never came back in 10 s (worker: {restyler.error or 'running'})")
    return 1000 * (seen[0] - t_submit)


def profile_student(model_dir: Path, device: torch.device, frames: list[FramePacket], threads: int | None,
                    sampler_changes: dict[str, Any] | None = None, chunks: int = PROFILE_CHUNKS,
                    upsample: bool = False, precision: str = "fp32") -> dict[str, float]:
    """Median ms of each stage of the student's step with a full cache, the model alone on the machine."""
    if threads:
        torch.set_num_threads(threads)
    engine = StreamEngine(load_bundle(model_dir, device, sampler_changes, upsample, precision), device)
    engine.set_style(STYLE)
    engine.warm_up()
    k = engine.chunk_frames
    times: dict[str, list[float]] = {"to_model": [], "denoise": [], "to_frames": [], "upsample": []}
    with torch.no_grad():
        for i in range(chunks + engine.sampler.window_chunks + engine.sampler.sink_chunks):
            chunk = [frames[(i * k + j) % len(frames)] for j in range(k)]
            t0 = time.perf_counter()
            incoming, cond = engine.to_model(chunk)
            _sync(device)
            t1 = time.perf_counter()
            x0 = engine.denoise(incoming, cond)
            _sync(device)
            t2 = time.perf_counter()
            out = engine.to_frames(x0)
            t3 = time.perf_counter()
            engine.upsample(out, chunk)
            t4 = time.perf_counter()
            if i >= engine.sampler.window_chunks + engine.sampler.sink_chunks:   # cache full: the steady state
                for name, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    times[name].append(1000 * dt)
    profile = {f"{name}_ms": statistics.median(v) for name, v in times.items()}
    passes = len(engine.sampler.timesteps) + (engine.sampler.refresh == "clean")
    profile["passes_per_chunk"] = passes
    profile["denoise_ms_per_pass"] = profile["denoise_ms"] / passes
    profile["chunk_ms"] = sum(profile[f"{n}_ms"] for n in times)
    profile["model_only_fps"] = 1000 * k / profile["chunk_ms"]
    return profile


def bench_teacher(model_dir: Path, device: torch.device, frames: list[FramePacket], game_fps: float,
                  precision: Precision | None = None) -> dict[str, float]:
    """The bidirectional teacher on one clip (in the student's precision): it must hold all F frames (arriving at
    the game's rate) before its ~50 guided steps can show the first."""
    from models.network.dit import Conditioning
    from models.network.prompt import PromptEncoder
    from models.network.sampling import sample_teacher
    from models.network.loading import load_network

    teacher, meta = load_network(model_dir, "teacher", device, precision)
    f = teacher.cfg.clip_frames
    probe = StreamEngine(load_bundle(model_dir, device), device)
    probe.set_style(STYLE)
    probe.chunk_frames = f   # to_model converts any number of frames; the teacher takes the whole clip
    incoming, cond = probe.to_model(frames[:f])
    cond = Conditioning(low=cond.low, gbuffers=cond.gbuffers, style=PromptEncoder.shared().encode([STYLE]).to(device))
    s = meta["sampler"]
    _sync(device)
    t0 = time.perf_counter()
    sample_teacher(teacher, cond, tuple(incoming.shape), steps=s["steps"], shift=s["shift"], guidance=s["guidance"],
                   generator=torch.Generator().manual_seed(0), device=device)
    _sync(device)
    compute = time.perf_counter() - t0
    gather = (f - 1) / game_fps
    return {"clip_frames": f, "steps": s["steps"], "guidance": s["guidance"], "clip_compute_s": compute,
            "first_frame_latency_ms": 1000 * (gather + compute), "throughput_fps": f / compute}


def run_bench(model_dir: Path, produce: Producer, device: str = "auto", seconds: float = 10.0,
              game_fps: float = 60.0, worker: str = "process", threads: int | None = 1,
              steps: int | None = None, teacher: bool = True, upsample: bool = False,
              say: Callable[[str], None] = print, precision: str = "auto") -> BenchResult:
    """`upsample`: the whole chain at display size (the producer's packets carry FramePacket.display and the
    model's upsampler draws there); off, the AI frames stay at the model's size. `precision`: the student's and
    the teacher's (models.network.precision)."""
    dev = resolve_device(device)
    restyler = StreamingRestyler.from_pretrained(model_dir, str(dev), worker=worker, threads=threads, steps=steps,
                                                 upsample=upsample, precision=precision)
    resolved = restyler.precision
    cfg, sampler, k = restyler.model_config, restyler.sampler, restyler.chunk_frames
    frames = [produce() for _ in range(PROFILE_FRAMES)]

    say(f"bench: {worker} worker ({threads or 'default'} torch threads, {resolved.describe()}) beside a "
        f"{game_fps:g} fps game loop, {seconds:g} s")
    with restyler:
        restyler.prepare(STYLE)
        first = [_first_frame_ms(produce, restyler, game_fps) for _ in range(FIRST_FRAME_TRIALS)]
        restyler.reset()
        loop = _GameLoop(produce, restyler, game_fps)
        loop.run(SETTLE_S)
        stats = restyler.stats
        out0, dropped0, chunks0, loop.frame_s = stats.frames_out, stats.dropped, stats.chunks, []
        game_frames, elapsed = loop.run(seconds)
        stats = restyler.stats
        if stats.error:
            raise RuntimeError(f"the worker failed during the benchmark: {stats.error}")
        shown = stats.frames_out - out0
        if shown == 0:
            raise RuntimeError(f"no stylized frame was shown in {seconds:g} s")
        latencies = 1000 * np.array(list(stats.latencies_s)[-shown:])
        throughput = shown / elapsed
        dropped = stats.dropped - dropped0
        chunks = stats.chunks - chunks0   # > 0: frames were shown
        compute = 1000 * np.array(list(stats.compute_s)[-chunks:])
    profile = profile_student(model_dir, dev, frames, threads, {"timesteps": sampler.timesteps}, upsample=upsample,
                              precision=resolved.name)
    passes = profile["passes_per_chunk"]
    context = (sampler.window_chunks + sampler.sink_chunks + 1) * k
    upsampler = load_upsampler(model_dir) if upsample else None
    upsampler_flops = 0.0 if upsampler is None else upsampler.flops_per_frame()
    frame_flops = flops_per_frame(cfg, context, passes) + upsampler_flops
    model_flops = throughput * frame_flops
    torch.set_num_threads(_cores())   # the peak of the whole device, whatever the worker was given
    peaks = {name: matmul_peak_flops(dev, dtype=dtype) for name, dtype in DTYPES.items()}
    t = bench_teacher(model_dir, dev, frames, game_fps, resolved) if teacher else None

    scores = {
        "device": _device_name(dev),
        "resolution": f"{restyler.resolution[0]}x{restyler.resolution[1]}",
        # the AI frames' size on screen: the upsampler's, or the model's own without one
        "display": "x".join(map(str, restyler.display_resolution or restyler.resolution)),
        "upsampler_gflop_per_frame": round(upsampler_flops / 1e9, 4),
        "steps": len(sampler.timesteps),
        "chunk_frames": k,
        "first_frame_latency_ms": round(statistics.median(first), 2),
        "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "latency_p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "throughput_fps": round(throughput, 2),
        "game_fps": round(game_frames / elapsed, 2),
        "mfu": round(model_flops / peaks[resolved.name], 4),   # against the peak of the precision it runs at
        "precision": resolved.name,
        "matmul_peak_gflops_fp32": round(peaks["fp32"] / 1e9, 1),
        "matmul_peak_gflops_bf16": round(peaks["bf16"] / 1e9, 1),
        "gflop_per_frame": round(frame_flops / 1e9, 4),
        "teacher_first_frame_latency_ms": None if t is None else round(t["first_frame_latency_ms"], 1),
        "teacher_throughput_fps": None if t is None else round(t["throughput_fps"], 4),
    }
    details = {
        "worker": worker, "torch_threads": threads, "game_target_fps": game_fps, "seconds": seconds,
        "sampler": asdict(sampler), "first_frame_trials_ms": [round(v, 2) for v in first],
        "game_frame_ms_p50": round(1000 * float(np.percentile(loop.frame_s, 50)), 2),
        "game_frame_ms_p95": round(1000 * float(np.percentile(loop.frame_s, 95)), 2),
        "frames_dropped": dropped,
        "chunk_compute_ms_beside_game": {"p50": round(float(np.percentile(compute, 50)), 2),
                                         "p95": round(float(np.percentile(compute, 95)), 2)},
        "student_profile": {k_: round(v, 3) for k_, v in profile.items()},
        "matmul_peak_gflops": round(peaks[resolved.name] / 1e9, 1), "precision_reason": resolved.reason,
        "teacher": t,
        "machine": {"cpus": _cores(), "platform": platform.platform(), "torch": torch.__version__},
    }
    if t is not None:
        details["ratios"] = {"first_frame": round(t["first_frame_latency_ms"] / scores["first_frame_latency_ms"], 1),
                             "throughput": round(throughput / t["throughput_fps"], 1)}
    return BenchResult(scores, details)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cores()} cores, {platform.processor() or platform.machine()}"


def table(result: BenchResult) -> str:
    s, d = result.scores, result.details
    rows = [("device", s["device"]), ("resolution / steps / chunk", f"{s['resolution']} / {s['steps']} / "
                                                                    f"{s['chunk_frames']} frames"),
            ("displayed", s["display"] + ("" if s["display"] == s["resolution"] else
                                          f" (upsampled, {s['upsampler_gflop_per_frame']:.2f} GFLOP a frame, "
                                          f"{d['student_profile']['upsample_ms']:.1f} ms a chunk)")),
            ("first frame", f"{s['first_frame_latency_ms']:.1f} ms"),
            ("latency p50 / p95", f"{s['latency_p50_ms']:.1f} / {s['latency_p95_ms']:.1f} ms"),
            ("throughput", f"{s['throughput_fps']:.1f} fps"),
            ("game loop", f"{s['game_fps']:.1f} fps (target {d['game_target_fps']:g}; frame p95 "
                          f"{d['game_frame_ms_p95']:.1f} ms)"),
            ("precision", f"{s['precision']} ({d['precision_reason']})"),
            ("mfu", f"{s['mfu']:.3f} (against the {s['precision']} matmul peak, {d['matmul_peak_gflops']:.0f} "
                    f"GFLOP/s; fp32 {s['matmul_peak_gflops_fp32']:.0f}, bf16 {s['matmul_peak_gflops_bf16']:.0f})"),
            ("model cost", f"{s['gflop_per_frame']:.2f} GFLOP per output frame"),
            ("student alone", f"{d['student_profile']['chunk_ms']:.1f} ms/chunk = "
                              f"{d['student_profile']['model_only_fps']:.1f} fps")]
    if s["teacher_first_frame_latency_ms"] is not None:
        rows += [("teacher first frame", f"{s['teacher_first_frame_latency_ms']:.0f} ms "
                                         f"({d['ratios']['first_frame']:.0f}x the student)"),
                 ("teacher throughput", f"{s['teacher_throughput_fps']:.3f} fps "
                                        f"(student {d['ratios']['throughput']:.0f}x)")]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# ---------------------------------------------------------------------------------------------------------------
# Glass to page: the capture path served as a web page (renderer.serve), watched by a headless Chromium


def find_chromium() -> str | None:
    import shutil

    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def bench_page(model_dir: Path, make_source: Callable[[Any], Any], seconds: float = 10.0,
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """`restyler capture --serve` as a streamer runs it, with one /view page open in a headless Chromium: the
    latency from a source frame handed to the runtime to the capture loop's display tick that shows it (when the
    capture window flips to it, and when it is handed to the server) and to its paint in the page (acknowledged
    back to the server), p50 and p95, and the page's painted frames a second. `make_source(stop_event)` builds the
    frame source on the capture's own thread."""
    from playwright.sync_api import sync_playwright

    from renderer.capture import capture_in_background
    from renderer.serve import StreamServer

    chromium = find_chromium()
    if chromium is None:
        raise RuntimeError("the page benchmark needs Chromium (Debian: apt install chromium) and the playwright "
                           "package (pip install playwright)")
    server = StreamServer("127.0.0.1", 0).start()
    restyler = StreamingRestyler.from_pretrained(model_dir)
    thread, stop, _ = capture_in_background(make_source, restyler, STYLE, server)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(server.page_url("view"))
            page.wait_for_function("window.restyler.painted > 0", timeout=120_000)
            time.sleep(SETTLE_S)
            server.stats.page_latencies.clear()
            server.stats.publish_latencies.clear()
            painted0 = page.evaluate("window.restyler.painted")
            say(f"bench: one /view page in headless Chromium beside the capture, {seconds:g} s")
            time.sleep(seconds)
            painted = page.evaluate("window.restyler.painted") - painted0
            page_ms = np.array(list(server.stats.page_latencies))
            window_ms = np.array(list(server.stats.publish_latencies))
            style_reach_ms = _style_reach_ms(server, page)
            browser.close()
    finally:
        stop.set()   # run_capture then closes the restyler and the server
        thread.join(timeout=30)
    if len(page_ms) == 0:
        raise RuntimeError("the page painted no frame whose source time the server knew")
    return {"page_fps": round(painted / seconds, 2),
            "window_latency_p50_ms": round(float(np.percentile(window_ms, 50)), 1),
            "window_latency_p95_ms": round(float(np.percentile(window_ms, 95)), 1),
            "page_latency_p50_ms": round(float(np.percentile(page_ms, 50)), 1),
            "page_latency_p95_ms": round(float(np.percentile(page_ms, 95)), 1),
            "frames_skipped_for_the_page": server.stats.frames_skipped,
            "style_reach_ms": round(style_reach_ms, 1),
            "source": "the capture path (RGB only) at 30 fps, one page"}


def _style_reach_ms(server, page, prompt: str = "neon night city") -> float:
    """From a style posted to /api/style (what the control page's Apply does) to the first frame the page paints
    in that style."""
    import urllib.request

    request = urllib.request.Request(server.url + "/api/style", json.dumps({"prompt": prompt}).encode(),
                                     {"Content-Type": "application/json"})
    t0 = time.monotonic()
    urllib.request.urlopen(request, timeout=10).close()
    page.wait_for_function(f"window.restyler.style === {json.dumps(prompt)}", timeout=30_000)
    return 1000 * (time.monotonic() - t0)
