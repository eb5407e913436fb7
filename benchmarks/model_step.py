"""Benchmark: one training step (forward + burn-in loss + backward + Adam) of the DIOD model on CPU.

Each preset runs in its own subprocess; peak memory is the growth of the process's maximum
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) from just before the first step
(model, optimiser and inputs built) to the end: activations, gradients, optimiser state and
allocator overhead of the step. Inputs are random clips of the preset's shape with a few moving
boxes as motion ids.

Presets: ``smoke`` and ``synthetic`` at their batch size; ``tri-pd`` at batch 1 (one clip of
5 frames at 480 x 968; about 13 TFLOP per step, minutes on 2 cores).

Usage: ``python benchmarks/model_step.py [--presets smoke synthetic tri-pd] [--steps 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

BATCH = {"smoke": None, "synthetic": None, "tri-pd": 1}


def child(preset: str, steps: int, batch: int | None, threads: int) -> dict:
    import resource

    import torch

    from diod_ray.config import load_preset
    from diod_ray.model import build_model
    from diod_ray.objectives.burn_in import burn_in_loss

    if threads:
        torch.set_num_threads(threads)
    cfg = load_preset(preset)
    B = batch or cfg.data.batch_size
    T, H, W = cfg.data.clip_len, cfg.data.height, cfg.data.width
    torch.manual_seed(0)
    model = build_model(cfg).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    video = torch.rand(B, T, 3, H, W).sub(0.5).div(0.5)
    ids = torch.zeros(B, T, H, W, dtype=torch.long)
    ids[:, :, H // 8 : H // 3, W // 8 : W // 3] = 1
    ids[:, :, H // 2 : 7 * H // 8, W // 2 : 3 * W // 4] = 2
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        res = burn_in_loss(
            model(video),
            ids,
            video,
            cfg.objectives,
            model.bg_index,
            max_objects=cfg.data.max_objects,
        )
        opt.zero_grad(set_to_none=True)
        res.total.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    steady = times[1:] or times
    return {
        "preset": preset,
        "batch": [B, T, 3, H, W],
        "parameters": model.parameter_counts()["total"],
        "first_step_s": round(times[0], 3),
        "step_s": round(sorted(steady)[len(steady) // 2], 3),
        "frames_per_s": round(B * T / sorted(steady)[len(steady) // 2], 2),
        "steps": steps,
        "rss_before_step_mib": round(base / 1024, 1),
        "peak_rss_growth_mib": round((peak - base) / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["smoke", "synthetic", "tri-pd"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.steps, BATCH.get(args.child), args.threads)))
        return
    results = []
    for preset in args.presets:
        steps = min(args.steps, 2) if preset == "tri-pd" else args.steps
        cmd = [sys.executable, __file__, "--child", preset, "--steps", str(steps)]
        cmd += ["--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"preset": preset, "error": proc.stderr.strip()[-2000:]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        json.dumps(
            {
                "benchmark": "DIOD model training step on CPU (forward + burn-in loss + backward + Adam)",
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
