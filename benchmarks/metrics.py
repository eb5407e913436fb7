"""Metrics at TRI-PD test scale: streaming accumulators vs scikit-learn's ARI called per clip.

    python benchmarks/metrics.py [--frames 10200] [--baseline-clips 100] [--device cpu]

10,200 frames of 120x242 (the attention grid of TRI-PD's 51 test videos x 200 frames), 45 slots,
evaluated as 2,040 clips of 5 frames, generated batch by batch (8 clips) so the benchmark never holds
the dataset: GT = ~15 moving rectangles per clip with global-style ids, predictions = the GT mapped
to slot ids, shifted by a pixel, with random fragments and label noise.

Ours: MetricAccumulator (both protocols) -> fg-ARI, all-ARI, F1@50, static/moving recall, mBO.
Baseline: sklearn.metrics.adjusted_rand_score per clip for fg-ARI and all-ARI (ARI only, no F1),
timed on the first --baseline-clips clips and extrapolated linearly to the whole set (said in the
JSON). Prints one JSON object; peak memory is the process's peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from diod_ray.metrics import MetricAccumulator

H, W, T, SLOTS = 120, 242, 5, 45


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_batch(rng: np.random.Generator, b: int, first_id: int, device: str):
    """GT int64 [b,T,H,W], pred int64 [b,T,H,W] (0 = background slot), moving bool [b,T,G+1]."""
    n_obj = 15
    gt = np.zeros((b, T, H, W), np.int64)
    ids = first_id + np.arange(b * n_obj).reshape(b, n_obj)  # global-style ids, unique per clip
    moving = np.zeros((b, T, int(ids.max()) + 1), bool)
    for i in range(b):
        for k in range(n_obj):
            y0, x0 = rng.integers(0, H - 20), rng.integers(0, W - 30)
            hh, ww = rng.integers(6, 40), rng.integers(6, 60)
            vy, vx = rng.integers(-2, 3), rng.integers(-3, 4)
            moving[i, :, ids[i, k]] = vy != 0 or vx != 0
            for t in range(T):  # later objects occlude earlier ones
                y, x = max(0, y0 + vy * t), max(0, x0 + vx * t)
                gt[i, t, y : y0 + vy * t + hh, x : x0 + vx * t + ww] = ids[i, k]
    # prediction: GT objects -> slots, shifted by one pixel, fragments in the background, 5% noise
    slot = np.where(gt > 0, (gt * 7) % (SLOTS - 1) + 1, 0)
    pred = np.roll(slot, shift=(1, 1), axis=(2, 3))
    frag = rng.random((b, T, H // 8 + 1, W // 11 + 1)) < 0.05
    frag = frag.repeat(8, 2).repeat(11, 3)[:, :, :H, :W]
    pred = np.where(frag & (pred == 0), rng.integers(1, SLOTS, pred.shape), pred)
    noise = rng.random(pred.shape) < 0.05
    pred[noise] = rng.integers(0, SLOTS, int(noise.sum()))
    t = lambda x: torch.from_numpy(x).to(device)  # noqa: E731
    return t(gt), t(pred), t(moving)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=10_200)
    p.add_argument("--batch-clips", type=int, default=8)
    p.add_argument("--baseline-clips", type=int, default=100)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    clips = args.frames // T
    gen = np.random.default_rng(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    rss0 = rss_mb()

    accs = {"clean": MetricAccumulator("clean"), "reference": MetricAccumulator("reference")}
    t_ours = {k: 0.0 for k in accs}
    t_gen = 0.0
    base_fg, base_all, ours_subset = [], [], MetricAccumulator("clean")
    t_base = 0.0
    done, next_id = 0, 1
    while done < clips:
        b = min(args.batch_clips, clips - done)
        t0 = time.perf_counter()
        gt, pred, moving = make_batch(gen, b, next_id, args.device)
        t_gen += time.perf_counter() - t0
        next_id += b * 15
        for name, acc in accs.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            acc.update(gt, pred, moving)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t_ours[name] += time.perf_counter() - t0
        if done < args.baseline_clips:  # baseline on a subset: sklearn per clip, fg and all
            g_np, p_np = gt.cpu().numpy(), pred.cpu().numpy()
            n = min(b, args.baseline_clips - done)
            t0 = time.perf_counter()
            for i in range(n):
                g, q = g_np[i].ravel(), p_np[i].ravel()
                fg = g > 0
                base_all.append(adjusted_rand_score(g, q))
                base_fg.append(adjusted_rand_score(g[fg], q[fg]))
            t_base += time.perf_counter() - t0
            ours_subset.update(gt[:n], pred[:n], moving[:n])
        done += b

    n_base = len(base_all)
    base_total = t_base * clips / n_base
    sub = ours_subset.summary()
    result = {
        "benchmark": "metrics",
        "frames": clips * T,
        "clips": clips,
        "grid": [H, W],
        "slots": SLOTS,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "ours_seconds": {k: round(v, 2) for k, v in t_ours.items()},
        "ours_metrics": "fg-ARI + all-ARI + F1@50 + precision/recall + static/moving recall + mBO",
        "generation_seconds": round(t_gen, 2),
        "baseline": "sklearn adjusted_rand_score per clip, fg-ARI + all-ARI only",
        "baseline_clips_timed": n_base,
        "baseline_seconds_timed": round(t_base, 2),
        "baseline_seconds_extrapolated": round(base_total, 1),
        "speedup_vs_baseline": {k: round(base_total / v, 1) for k, v in t_ours.items()},
        "peak_rss_mb": round(rss_mb(), 1),
        "rss_before_mb": round(rss0, 1),
        "subset_check": {
            "sklearn_all_ari": float(np.mean(base_all)),
            "ours_all_ari": sub["all_ari"],
            "sklearn_fg_ari": float(np.mean(base_fg)),
            "ours_fg_ari": sub["fg_ari"],
        },
        "summary_clean": accs["clean"].summary(),
        "summary_reference": accs["reference"].summary(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
