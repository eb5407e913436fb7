"""Benchmark: Hungarian matching + burn-in loss, batched (ours) vs the reference's per-frame loop.

Workload: 8 clips x 5 frames at the TRI-PD grid (120 x 242 tokens, 45 slots, slot 44 the
background), 12 moving objects per frame (motion ids at the 480 x 968 input resolution), W_fg =
1 - attention of the background slot, reconstruction [8, 5, 3, 480, 968]. Timed: the loss value
AND its backward pass to the attention / reconstruction (what a training step pays).

* ``reference_loop``: written like the reference's ``computeWBCE`` + NLL + reg + MSE
  (docs/reference-notes.md §3): nearest downsampling + one-hot with n_obj = max id of the
  batch; per (clip, frame) a ``.cpu().numpy()`` copy, numpy log and two CPU matmuls for the
  [44 x n_obj] cost, ``linear_sum_assignment``; then a Python loop over the matched pairs, each
  a full-frame torch BCE; reference normalisation.
* ``batched``: :func:`diod_ray.objectives.burn_in.burn_in_loss` (reference normalisation so the
  values agree): tensorised masks, two bmm's for all 40 cost matrices, 40 small Hungarian calls,
  one gather and a masked reduction. Both losses are checked to agree.

Usage: ``python benchmarks/matching.py [--repeats 3] [--threads N] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from diod_ray.config import Config
from diod_ray.model.diod import ModelOutput, ModelState
from diod_ray.objectives.burn_in import burn_in_loss

B, T, K, H, W = 8, 5, 45, 480, 968
h, w = 120, 242
OBJECTS = 12


def workload(device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, K, h // 4, w // 4, generator=g) * 2
    logits = F.interpolate(logits.flatten(0, 1), size=(h, w), mode="bilinear").unflatten(0, (B, T))
    attn_logits = logits.to(device)
    ids = torch.zeros(B, T, H, W, dtype=torch.long)
    # 12 objects per frame, one per cell of a 3 x 4 layout, random box inside its cell
    ch, cw = H // 3, W // 4
    for b in range(B):
        for t in range(T):
            for o in range(OBJECTS):
                r, c = divmod(o, 4)
                hh = int(torch.randint(20, ch - 4, (1,), generator=g))
                ww = int(torch.randint(20, cw - 4, (1,), generator=g))
                y0 = r * ch + int(torch.randint(0, ch - hh, (1,), generator=g))
                x0 = c * cw + int(torch.randint(0, cw - ww, (1,), generator=g))
                ids[b, t, y0 : y0 + hh, x0 : x0 + ww] = 3 * o + 5  # sparse, non-contiguous ids
    recon = torch.randn(B, T, 3, H, W, generator=g).to(device)
    target = torch.randn(B, T, 3, H, W, generator=g).to(device)
    return attn_logits, ids.to(device), recon, target


def leaves(attn_logits, recon):
    attn = attn_logits.clone().requires_grad_(True)
    rec = recon.clone().requires_grad_(True)
    return attn, rec


def reference_loop(attn_leaf, rec_leaf, ids, target, alpha=0.3, bg=K - 1):
    """The reference's per-frame, per-object burn-in loss (a re-creation, not its code)."""
    attn = attn_leaf.softmax(dim=2)  # [B, T, K, h, w]
    fg = 1 - attn[:, :, bg]
    small = F.interpolate(ids.float().flatten(0, 1)[:, None], size=(h, w), mode="nearest")
    small = small.long().reshape(B, T, h, w)
    # per-frame remap to contiguous ids (the dataset does this at full resolution)
    remapped = torch.zeros_like(small)
    for b in range(B):
        for t in range(T):
            remapped[b, t] = torch.unique(small[b, t], return_inverse=True)[1]
    n_obj = int(remapped.max())
    masks = F.one_hot(remapped, n_obj + 1).permute(0, 1, 4, 2, 3)[:, :, 1:].float()
    P = h * w
    p_all = attn * 0.999 + 1e-8
    loss = 0.0
    for b in range(B):
        for t in range(T):
            p_np = p_all[b, t].detach().cpu().numpy().reshape(K, P)[:bg]  # [44, P]
            gt_np = masks[b, t].cpu().numpy().reshape(n_obj, P)  # [n_obj, P]
            score = np.log(p_np) @ gt_np.T + np.log(1 - p_np) @ (1 - gt_np).T  # [44, n_obj]
            rows, cols = linear_sum_assignment(-score)
            frame_losses = []
            for r, c in zip(rows, cols):
                y = masks[b, t, c]
                if y.sum() == 0:
                    continue
                portion = y.sum() / P
                p = p_all[b, t, r]
                bce = -(2 - portion) * y * torch.log(p) - (1 - y) * torch.log(1 - p)
                frame_losses.append(bce.mean())
            if frame_losses:
                loss = loss + torch.stack(frame_losses).mean()
    motion = loss / B
    m_fg = masks.sum(dim=2)
    wfg = fg * 0.999 + 1e-8
    nll = (-torch.log(wfg) * m_fg).mean()
    reg = wfg.mean()
    mse = F.mse_loss(rec_leaf, target)
    return mse + motion + nll + alpha * reg


def batched(attn_leaf, rec_leaf, ids, target, cfg):
    attn = attn_leaf.softmax(dim=2)
    out = ModelOutput(
        attn=attn,
        fg=1 - attn[:, :, K - 1],
        recon=rec_leaf,
        slots=attn.new_zeros(B, T, K, 1),
        state=ModelState(slots=attn.new_zeros(B, K, 1)),
    )
    return burn_in_loss(
        out, ids, target, cfg.objectives, K - 1, max_objects=cfg.data.max_objects
    ).total


def timed(fn, repeats: int, device: str) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        value = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config()
    cfg.data.max_objects = 24
    cfg.objectives.normalisation = "reference"
    attn_logits, ids, recon, target = workload(args.device)

    def run_ref():
        a, r = leaves(attn_logits, recon)
        loss = reference_loop(a, r, ids, target)
        loss.backward()
        return loss.item()

    def run_ours():
        a, r = leaves(attn_logits, recon)
        loss = batched(a, r, ids, target, cfg)
        loss.backward()
        return loss.item()

    run_ours()  # warm-up (allocator, scipy import)
    t_ours, v_ours = timed(run_ours, args.repeats, args.device)
    t_ref, v_ref = timed(run_ref, args.repeats, args.device)
    print(
        json.dumps(
            {
                "benchmark": "matching + burn-in loss, forward + backward",
                "workload": f"{B} clips x {T} frames, grid {h}x{w}, {K} slots, {OBJECTS} objects/frame",
                "device": args.device,
                "torch_threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "repeats": args.repeats,
                "reference_loop_s": round(t_ref, 4),
                "batched_s": round(t_ours, 4),
                "speedup": round(t_ref / t_ours, 2),
                "loss_reference_loop": round(v_ref, 6),
                "loss_batched": round(v_ours, 6),
                "losses_agree": bool(abs(v_ref - v_ours) <= 1e-4 * max(1.0, abs(v_ref))),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
