"""Statistics over seeds for the sweep reports (docs/sweeps.md, "Statistics").

Per cell: n, mean, sample standard deviation and a 95 % confidence interval for the mean by
Student's t (``mean ± t_{0.975, n-1} · sd / sqrt(n)``). With the few seeds a sweep affords
(n < 5) the t-interval is wide and assumes roughly normal per-seed values; the tables say so.
n = 1 gives no interval (null). Paired differences (same seed) use the same interval on the
per-seed differences.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

CONFIDENCE = 0.95


def t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


def summarise(values: list[float | None]) -> dict[str, Any]:
    """{"n", "mean", "sd", "ci_low", "ci_high"} over the finite values (None where undefined)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "ci_low": None, "ci_high": None}
    if n == 0:
        return out
    out["mean"] = statistics.fmean(vals)
    if n > 1:
        out["sd"] = statistics.stdev(vals)
        half = t_quantile(n - 1) * out["sd"] / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    return out


def paired(a: dict[int, float | None], b: dict[int, float | None]) -> dict[str, Any]:
    """Summary of ``a[seed] - b[seed]`` over the seeds both have; ``excludes_0`` when the
    interval lies entirely on one side of 0."""
    diffs = [a[s] - b[s] for s in sorted(set(a) & set(b)) if a[s] is not None and b[s] is not None]
    out = summarise(diffs)
    lo, hi = out["ci_low"], out["ci_high"]
    out["excludes_0"] = lo is not None and (lo > 0 or hi < 0)
    return out


def fmt_cell(s: dict[str, Any]) -> str:
    """``mean [low, high] (n)``; ``–`` without values; no interval with n = 1."""
    if s["mean"] is None:
        return "–"
    if s["ci_low"] is None:
        return f"{s['mean']:.1f} (n={s['n']})"
    return f"{s['mean']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}] (n={s['n']})"


METHOD_NOTE = (
    "Cells: mean over seeds [95 % t-interval] (n seeds); with n < 5 the t-interval assumes "
    "roughly normal per-seed values and is wide; n = 1 has no interval."
)
