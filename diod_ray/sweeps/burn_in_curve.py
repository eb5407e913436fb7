"""Choosing the burn-in length from the validation curve of one burn-in run (issue 12, item 5).

The ablation sweep and Table 4(c) need a burn-in that has plateaued, chosen on ``val`` and never
on test. One burn-in-only run with ``run.val_every_epochs`` > 0 logs ``val/f1`` (and the other
``val/*`` metrics) to its TensorBoard files; :func:`plateau_epoch` applies a rule fixed before
the curve is read:

    smooth the curve with a centred moving average over ``window`` consecutive evaluations
    (full windows only); the plateau starts at the first evaluation whose smoothed value is
    within ``tolerance`` points of the highest smoothed value.

With F1@50 on a few dozen validation clips single evaluations are noisy (several points between
neighbours), hence the smoothing. ``python sweeps/burn_in_length.py RUN_DIR`` prints the curve
and the choice (docs/results.md).
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any


class CurveError(ValueError):
    """A run directory without a usable validation curve; the message names the file."""


def moving_average(values: list[float], window: int) -> list[float | None]:
    """Centred mean over ``window`` values (odd); None where the window does not fit."""
    if window < 1 or window % 2 == 0:
        raise CurveError(f"--window: expected an odd number >= 1, got {window}")
    half = window // 2
    out: list[float | None] = []
    for i in range(len(values)):
        lo, hi = i - half, i + half + 1
        out.append(sum(values[lo:hi]) / window if lo >= 0 and hi <= len(values) else None)
    return out


def plateau_epoch(
    curve: list[tuple[int, float]], window: int = 3, tolerance: float = 1.5
) -> dict[str, Any]:
    """``curve``: (epoch, metric in %) in epoch order. Returns the chosen epoch with the smoothed
    curve and the threshold it crossed."""
    if len(curve) < window:
        raise CurveError(f"the curve has {len(curve)} evaluation(s); the rule needs >= {window}")
    epochs = [e for e, _ in curve]
    smooth = moving_average([v for _, v in curve], window)
    best = max(s for s in smooth if s is not None)
    threshold = best - tolerance
    chosen = next(e for e, s in zip(epochs, smooth) if s is not None and s >= threshold)
    return {
        "epoch": chosen,
        "best_smoothed": best,
        "threshold": threshold,
        "window": window,
        "tolerance": tolerance,
        "curve": [{"epoch": e, "value": v, "smoothed": s} for (e, v), s in zip(curve, smooth)],
    }


def read_val_curve(run_dir: str, metric: str = "val/f1") -> list[tuple[int, float]]:
    """(epoch, 100 * metric) from a local run directory's TensorBoard files; the epoch is the
    logged global step over the run's steps per epoch (from its ``summary.json``)."""
    summary_file = os.path.join(run_dir, "summary.json")
    if not os.path.exists(summary_file):
        raise CurveError(f"{summary_file}: not found (is {run_dir} a finished run directory?)")
    with open(summary_file) as f:
        summary = json.load(f)
    steps, epochs = summary.get("steps"), summary.get("epochs")
    if not steps or not epochs:
        raise CurveError(f"{summary_file}: field 'steps' or 'epochs' missing or zero")
    steps_per_epoch = steps // epochs
    events = sorted(glob.glob(os.path.join(run_dir, "tensorboard", "events.out.tfevents.*")))
    if not events:
        raise CurveError(f"{run_dir}/tensorboard: no TensorBoard event file")
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as e:  # a dev dependency: the reader of TensorBoard files
        raise CurveError("reading TensorBoard files needs `pip install tensorboard`") from e
    by_step: dict[int, float] = {}
    for path in events:
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        if metric in acc.Tags().get("scalars", []):
            by_step.update({e.step: 100.0 * e.value for e in acc.Scalars(metric)})
    if not by_step:
        raise CurveError(
            f"{run_dir}/tensorboard: no {metric!r} scalar (train with run.val_every_epochs > 0)"
        )
    return [(step // steps_per_epoch, by_step[step]) for step in sorted(by_step)]
