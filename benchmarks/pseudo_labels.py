"""Benchmark: teacher pseudo-label extraction, batched (ours) vs the reference's per-frame loop.

Workload: 8 clips x 5 frames at the TRI-PD attention grid (45 slots, 120 x 242). The attention maps
are softmaxes of Gaussian blobs (about 2 per slot, radius 3-8 grid pixels) plus smooth noise, so
nearly every slot wins pixels in every frame (about 39 labels per frame; the reference
measurement in docs/reference-notes.md §8 saw 1,759 label calls for 40 frames) and the
one-to-many connection has many connected components (~3,500). W_fg = 1 - attention of the
background slot.

Timed, each as best-of-repeats wall time and process CPU time:

* ``reference_labels``: a re-creation of the reference's steps 1-3 (docs/reference-notes.md
  §3 "Teacher pseudo-labels"): argmax, then per frame, per label ``scipy.ndimage.label``; fresh ids
  for confident split-off components; size filter and renumbering with ``np.unique``; then the
  confidence (mean W_fg) of each pseudo-label and its filter (the reference does that in
  ``computeWBCE_TS``).
* ``reference_dense``: the same plus the one-hot [B, T, K_t, h, w] masks of step 3.
* ``ours_paper``: :func:`diod_ray.objectives.pseudo_labels.extract_candidates` with the defaults
  (index map, eq. (2) scores, kept flags); ``ours_paper_dense`` adds ``masks_upto(max_kept)``, the
  dense float masks of the kept candidates the loss consumes.
* ``ours_quirks*``: the same with both reference quirks and W_fg scores, i.e. the reference's
  semantics; its kept masks are checked to equal the reference's (when the reference never ran out
  of fresh slot ids).
* ``*_argmax_only`` / ``ours_max_only``: the per-pixel argmax over the 45 maps alone, which both
  sides must pay (the reference ``argmax``; ours :func:`diod_ray.objectives.slot_argmax.slot_argmax`,
  value and index in one pass: a numba loop on the CPU, ``torch.max`` on a GPU);
  ``torch_max_only`` is ``torch.max(dim=1)`` for comparison.

Usage: ``python benchmarks/pseudo_labels.py [--device cpu|cuda] [--repeats 5] [--threads N]``.
Prints one JSON object. On a shared 2-core machine use ``--threads 1``: two torch threads stall
whenever another process holds a core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
from scipy import ndimage

from diod_ray.config import Config
from diod_ray.objectives.pseudo_labels import extract_candidates
from diod_ray.objectives.slot_argmax import slot_argmax

# ---- workload --------------------------------------------------------------------------------


def smooth_attention(
    n: int,
    k: int,
    h: int,
    w: int,
    seed: int = 0,
    blobs_per_slot: float = 2.0,
    max_radius: float = 8.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher-like [n, k, h, w] softmax; the last slot is the background slot.

    Each non-background slot of each frame gets Poisson(blobs_per_slot) Gaussian blobs (radius 3-14
    grid pixels) at random places, so a slot often holds several separated instances; smooth noise
    (sigma 3 px) makes the borders ragged and leaves small fragments. The background slot has a
    constant logit, so W_fg is high inside blobs and low elsewhere.
    """
    g = torch.Generator().manual_seed(seed)
    m = 6  # blob capacity per slot
    count = torch.poisson(torch.full((n, k, 1), blobs_per_slot), generator=g)
    on = torch.arange(m).view(1, 1, m) < count  # [n, k, m]
    cy = torch.rand(n, k, m, generator=g) * h
    cx = torch.rand(n, k, m, generator=g) * w
    radius = 3.0 + (max_radius - 3.0) * torch.rand(n, k, m, generator=g)
    yy = torch.arange(h, dtype=torch.float32).view(1, 1, 1, h, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, 1, w)
    d2 = (yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2  # [n, k, m, h, w]
    bumps = torch.exp(-d2 / (2 * radius[..., None, None] ** 2)) * on[..., None, None]
    logits = 4.5 * bumps.amax(2)  # [n, k, h, w]
    sigma, r = 3.0, 9
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    kern = torch.exp(-(x**2) / (2 * sigma**2))
    kern = kern / kern.sum()
    noise = torch.randn(n * k, 1, h, w, generator=g)
    noise = torch.nn.functional.conv2d(noise, kern.view(1, 1, 1, -1), padding=(0, r))
    noise = torch.nn.functional.conv2d(noise, kern.view(1, 1, -1, 1), padding=(r, 0))
    logits = logits + 0.45 * (noise / noise.std()).view(n, k, h, w)
    logits[:, -1] = 2.0  # background slot
    attn = torch.softmax(4.0 * logits, dim=1)
    fg = 1.0 - attn[:, -1]
    return attn, fg


# ---- the reference's loop (re-created, not their code) -----------------------------------------


def reference_pseudo_masks(
    attn: torch.Tensor,
    fg: torch.Tensor,
    bg_index: int,
    min_pixels: int,
    p: float,
    batch: int,
    dense: bool = True,
) -> tuple[torch.Tensor | np.ndarray, np.ndarray, int]:
    """Steps 1-3 of the reference plus its loss-side confidence filter, frame by frame.

    Returns (pseudo-masks [B, T, K_t, h, w] float, or the renumbered label map [N, h, w] when not
    ``dense``; kept [N, K_t] bool = conf >= p; number of components that found no free slot id).
    """
    n, k, h, w = attn.shape
    labels = attn.argmax(1).cpu().numpy()  # step 1: per-pixel labels
    fg_np = fg.cpu().numpy()
    labels[labels == bg_index] = 0  # background label -> 0 (slot 0 is label 0 too: the quirk)
    out = np.zeros_like(labels)
    out_of_ids = 0
    for i in range(n):
        lab = labels[i].copy()
        for s in np.unique(lab):  # step 2: split each label into components (4-connectivity)
            comp, ncomp = ndimage.label(lab == s)
            for c in range(2, ncomp + 1):  # component 1 keeps its label
                region = comp == c
                if region.sum() > min_pixels and fg_np[i][region].mean() > p:
                    used = set(np.unique(lab).tolist())
                    free = [j for j in range(k) if j not in used]
                    if free:
                        lab = np.where(region, free[0], lab)
                    else:  # the reference prints a message and leaves the label
                        out_of_ids += 1
                else:
                    lab = np.where(region, 0, lab)
        ids, counts = np.unique(lab, return_counts=True)  # step 3: size filter, renumber
        for j, cnt in zip(ids, counts):
            if cnt <= min_pixels:
                lab = np.where(lab == j, 0, lab)
        _, inverse = np.unique(lab, return_inverse=True)
        out[i] = inverse.reshape(h, w) + (0 if (lab == 0).any() else 1)
    k_t = int(out.max()) + 1
    kept = np.zeros((n, k_t - 1), dtype=bool)
    if not dense:
        for i in range(n):  # the loss: per pseudo-mask confidence = mean raw W_fg
            for j in range(1, k_t):
                m = out[i] == j
                if m.any():
                    kept[i, j - 1] = fg_np[i][m].mean() >= p
        return out, kept, out_of_ids
    onehot = torch.nn.functional.one_hot(torch.from_numpy(out).long(), k_t)  # [N, h, w, K_t]
    masks = onehot.permute(0, 3, 1, 2)[:, 1:].float()  # drop channel 0
    for i in range(n):  # the loss: per pseudo-mask confidence = mean raw W_fg
        for j in range(k_t - 1):
            m = masks[i, j].numpy() > 0
            if m.any():
                kept[i, j] = fg_np[i][m].mean() >= p
    return masks.view(batch, n // batch, k_t - 1, h, w), kept, out_of_ids


# ---- timing ------------------------------------------------------------------------------------


def _time(fn, repeats: int, sync) -> tuple[dict, object]:
    """Best wall and best process CPU time over ``repeats`` runs after one warm-up run."""
    out = fn()
    sync()
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        sync()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=5)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    k, h, w = 45, 120, 242
    n = args.clips * args.frames
    bg = k - 1
    attn, fg = smooth_attention(n, k, h, w)
    attn_d, fg_d = attn.to(device), fg.to(device)

    paper = Config()
    quirks = Config()
    quirks.distill.score_source = "foreground"
    quirks.distill.quirk_slot0_background = True
    quirks.distill.quirk_first_component = True

    def ours(cfg: Config, dense: bool):
        cands = extract_candidates(attn_d, fg_d, cfg.distill, bg)
        return cands, (cands.masks_upto(cands.max_kept) if dense else None)

    reps = max(1, args.repeats // 2)
    t = {}
    t["reference_dense"], (ref_masks, ref_kept, out_of_ids) = _time(
        lambda: reference_pseudo_masks(attn, fg, bg, 10, 0.9, args.clips), reps, lambda: None
    )
    t["reference_labels"], _ = _time(
        lambda: reference_pseudo_masks(attn, fg, bg, 10, 0.9, args.clips, dense=False),
        reps,
        lambda: None,
    )
    t["reference_argmax_only"], _ = _time(lambda: attn.argmax(1), args.repeats, lambda: None)
    t["ours_paper"], (c_paper, _) = _time(lambda: ours(paper, False), args.repeats, sync)
    t["ours_paper_dense"], _ = _time(lambda: ours(paper, True), args.repeats, sync)
    t["ours_quirks"], _ = _time(lambda: ours(quirks, False), args.repeats, sync)
    t["ours_quirks_dense"], (c_quirk, m_quirk) = _time(
        lambda: ours(quirks, True), args.repeats, sync
    )
    t["ours_max_only"], _ = _time(lambda: slot_argmax(attn_d), args.repeats, sync)
    t["torch_max_only"], _ = _time(lambda: attn_d.max(1), args.repeats, sync)

    # the quirk mode reproduces the reference: same kept masks per frame (as sets)
    ref_flat = ref_masks.reshape(n, -1, h * w)
    ours_flat = m_quirk.reshape(n, -1, h * w).cpu()
    same = True
    for i in range(n):
        a = {bytes(m.numpy().astype(np.uint8)) for m, kp in zip(ref_flat[i], ref_kept[i]) if kp}
        valid = c_quirk.valid[i, : ours_flat.shape[1]].cpu()
        b = {bytes(m.numpy().astype(np.uint8)) for m, v in zip(ours_flat[i], valid) if v}
        same &= a == b

    labels = attn.argmax(1).numpy()
    components = int(
        sum(ndimage.label(lab == s)[1] for lab in labels for s in np.unique(lab) if s != bg)
    )

    def ratio(a: str, b: str, key: str) -> float:
        return round(t[a][key] / t[b][key], 1)

    print(
        json.dumps(
            {
                "benchmark": "pseudo_labels",
                "device": str(device),
                "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
                "torch_threads": torch.get_num_threads(),
                "load_average_1m": round(os.getloadavg()[0], 1),
                "clips": args.clips,
                "frames": args.frames,
                "slots": k,
                "grid": [h, w],
                "non_background_components": components,
                "timings": t,
                "speedup_wall": {
                    "dense_masks": ratio("reference_dense", "ours_paper_dense", "wall_s"),
                    "labels_only": ratio("reference_labels", "ours_paper", "wall_s"),
                    "reference_semantics_dense": ratio(
                        "reference_dense", "ours_quirks_dense", "wall_s"
                    ),
                },
                "speedup_cpu": {
                    "dense_masks": ratio("reference_dense", "ours_paper_dense", "cpu_s"),
                    "labels_only": ratio("reference_labels", "ours_paper", "cpu_s"),
                    "reference_semantics_dense": ratio(
                        "reference_dense", "ours_quirks_dense", "cpu_s"
                    ),
                },
                "ours_paper_kept": c_paper.n_kept,
                "ours_paper_dropped": c_paper.n_dropped,
                "ours_paper_small": c_paper.n_small,
                "ours_paper_max_kept_per_frame": c_paper.max_kept,
                "reference_kept": int(ref_kept.sum()),
                "reference_out_of_free_ids": out_of_ids,
                "ours_quirks_kept": c_quirk.n_kept,
                # only comparable when the reference never ran out of fresh slot ids (it then
                # leaves split-off components merged, which the batched version does not imitate)
                "quirk_mode_equals_reference": bool(same) if out_of_ids == 0 else None,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
