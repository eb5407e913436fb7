"""Training-step speed and memory per preset; prints one JSON object.

    python benchmarks/train_step.py                       # CPU: smoke, synthetic (batch 8), tri-pd (batch 1)
    python benchmarks/train_step.py --device cuda --presets tri-pd --batch 8 --precisions fp32 bf16

Each (preset, precision) runs in a fresh subprocess so peak memory is its own: CPU peak is the
process's max RSS, GPU peak is torch.cuda.max_memory_allocated. A step is the full training step of
the loop (forward, loss, backward, clip, Adam, and in distillation the teacher forward and EMA);
both phases are timed. Model FLOP utilisation (GPU) = model FLOPs per step (torch's FLOP counter
on the forward, x3 for forward+backward, plus the teacher forward in distillation) / step time /
the device's peak (--peak-tflops, default 989 = H100 SXM dense bf16; use 495 for tf32 fp32).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def random_batch(cfg, batch: int, device):
    import torch

    T, H, W = cfg.data.clip_len, cfg.data.height, cfg.data.width
    g = torch.Generator().manual_seed(0)
    video = torch.rand(batch, T, 3, H, W, generator=g) * 2 - 1
    motion = torch.zeros(batch, T, H, W, dtype=torch.long)
    # a few moving rectangles per frame: realistic object counts for matching
    for k in range(1, 7):
        y, x = (k * H) // 8, (k * W) // 8
        for t in range(T):
            motion[:, t, y : y + H // 10, x + 2 * t : x + 2 * t + W // 12] = k
    return {"weak": video.to(device), "strong": video.to(device), "motion": motion.to(device)}


def forward_flops(model, video) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(video)
    return counter.get_total_flops()


def measure(
    preset: str, device_name: str, batch: int, precision: str, steps: int, warmup: int
) -> dict:
    import torch

    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.training.schedule import make_plan
    from diod_ray.training.state import TrainState
    from diod_ray.training.step import train_step

    device = torch.device(device_name)
    cfg = apply_overrides(
        load_preset(preset),
        {
            "data.batch_size": batch,
            "run.precision": precision,
            "run.use_gpu": device.type == "cuda",
        },
    )
    ts = TrainState(cfg, device)
    data = random_batch(cfg, batch, device)
    plan = make_plan(cfg, steps_per_epoch=10**6)
    out: dict = {
        "preset": preset,
        "device": device_name,
        "batch": batch,
        "precision": precision,
        "clip_len": cfg.data.clip_len,
        "resolution": [cfg.data.height, cfg.data.width],
    }
    fwd = forward_flops(ts.student, data["strong"])

    def timed(phase: str) -> float:
        for _ in range(warmup):
            train_step(ts, data, plan)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(ts, data, plan)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / steps

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out["burn_in_step_s"] = timed("burn_in")
    # switch to distillation: the teacher is a copy of the student
    cfg_d = apply_overrides(cfg, {"schedule.burn_in_epochs": 0})
    ts.cfg = cfg_d
    plan = make_plan(cfg_d, steps_per_epoch=10**6)
    ts.make_teacher()
    out["distill_step_s"] = timed("distill")
    out["clips_per_s_burn_in"] = batch / out["burn_in_step_s"]
    out["clips_per_s_distill"] = batch / out["distill_step_s"]
    out["forward_gflop_per_frame"] = fwd / (batch * cfg.data.clip_len) / 1e9
    out["train_tflop_per_step_burn_in"] = 3 * fwd / 1e12
    out["train_tflop_per_step_distill"] = 4 * fwd / 1e12
    if device.type == "cuda":
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["gpu"] = torch.cuda.get_device_name()
    else:
        out["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        out["torch_threads"] = torch.get_num_threads()
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", nargs="+", default=["smoke", "synthetic", "tri-pd"])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--batch", type=int, default=0, help="clips per step; 0 = preset's (tri-pd: 1 on CPU)"
    )
    p.add_argument("--precisions", nargs="+", default=["fp32"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument(
        "--one", nargs=4, metavar=("PRESET", "DEVICE", "BATCH", "PRECISION"), help=argparse.SUPPRESS
    )
    args = p.parse_args()
    if args.one:
        preset, device, batch, precision = args.one
        print(json.dumps(measure(preset, device, int(batch), precision, args.steps, args.warmup)))
        return
    from diod_ray.config import load_preset

    results = []
    for preset in args.presets:
        batch = args.batch or (
            1
            if preset == "tri-pd" and args.device == "cpu"
            else load_preset(preset).data.batch_size
        )
        for precision in args.precisions:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    preset,
                    args.device,
                    str(batch),
                    precision,
                    "--steps",
                    str(args.steps),
                    "--warmup",
                    str(args.warmup),
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                results.append(
                    {"preset": preset, "precision": precision, "error": proc.stderr[-2000:]}
                )
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if args.device.startswith("cuda"):
                for phase in ("burn_in", "distill"):
                    flops = r[f"train_tflop_per_step_{phase}"] * 1e12
                    r[f"mfu_{phase}"] = flops / r[f"{phase}_step_s"] / (args.peak_tflops * 1e12)
            results.append(r)
    print(
        json.dumps(
            {"machine": platform.processor() or platform.machine(), "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
