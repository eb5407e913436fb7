"""W_fg coverage of static vs moving GT objects: the headroom self-distillation must fill.

Burn-in (paper §3.2, eq. 1) trains W_fg = 1 - the background slot's attention on motion masks,
which cover moving objects only. Distillation (§3.3) is meant to extend the foreground to static
objects. Given a checkpoint (typically the end of burn-in), this measures, per (frame, visible GT
object), the mean W_fg over the object's pixels at the model's attention grid, split by the
moving flag. ``moving.covered_share - static.covered_share`` is the headroom: on a benchmark where
burn-in already covers static objects as well as moving ones, distillation has nothing to add
(issue 12; docs/data.md, "Headroom").

Run: ``python -m diod_ray.data inspect URI --split val --checkpoint CKPT [--weights student]``.
This module counts, from W_fg maps and GT given to it; the model that makes the maps runs in
:func:`diod_ray.inference.fg_coverage` (eval mode, BatchNorm running statistics: the ``clean``
protocol of docs/metrics.md, on windows of the checkpoint's ``data.clip_len`` frames).
"""

from __future__ import annotations

import numpy as np

# an object counts as covered when its mean W_fg exceeds this: more foreground than background
COVER_THRESHOLD = 0.5


class FgCoverage:
    """Accumulates per (frame, object) mean W_fg by moving flag; ``summary()`` gives the figures."""

    def __init__(self) -> None:
        self.values: dict[bool, list[float]] = {True: [], False: []}
        self.bg_sum = 0.0
        self.bg_pixels = 0

    def update(self, fg: np.ndarray, gt: np.ndarray, moving: np.ndarray) -> None:
        """fg float [T,h,w] W_fg, gt int [T,h,w] (at the same grid), moving bool [T,G+1]."""
        for t in range(gt.shape[0]):
            ids = gt[t].ravel().astype(np.int64)
            n = max(int(ids.max()) + 1, moving.shape[1])
            area = np.bincount(ids, minlength=n)
            total = np.bincount(ids, weights=fg[t].ravel().astype(np.float64), minlength=n)
            self.bg_sum += float(total[0])
            self.bg_pixels += int(area[0])
            for k in np.nonzero(area[1:])[0] + 1:
                mv = bool(moving[t, k]) if k < moving.shape[1] else False
                self.values[mv].append(float(total[k] / area[k]))

    def summary(self) -> dict:
        def part(v: list[float]) -> dict:
            a = np.asarray(v, float)
            if not len(a):
                return {"objects": 0, "mean_fg": None, "covered_share": None}
            return {
                "objects": int(len(a)),
                "mean_fg": round(float(a.mean()), 4),
                "covered_share": round(float((a > COVER_THRESHOLD).mean()), 4),
            }

        mov, sta = part(self.values[True]), part(self.values[False])
        bg = round(self.bg_sum / self.bg_pixels, 4) if self.bg_pixels else None
        for p in (mov, sta):  # how far above the background's W_fg objects stand
            ok = p["mean_fg"] is not None and bg is not None
            p["contrast"] = round(p["mean_fg"] - bg, 4) if ok else None
        head = None
        if mov["covered_share"] is not None and sta["covered_share"] is not None:
            head = round(mov["covered_share"] - sta["covered_share"], 4)
        return {
            "moving": mov,
            "static": sta,
            "background_mean_fg": bg,
            "headroom_covered_share": head,
        }
