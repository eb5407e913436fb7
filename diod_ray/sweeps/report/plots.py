"""``<kind>.png`` of a sweep's report: heatmaps over alpha x burn-in, bars of the ablations beside
the paper's, F1 over the threshold search; every bar and heatmap cell of ours shows its 95 %
interval over seeds (:mod:`.stats`)."""

from __future__ import annotations

import io
import textwrap
from typing import Any

from diod_ray.sweeps.report.ablations import ablation_rows
from diod_ray.sweeps.report.alpha_burnin import alpha_burnin_cells
from diod_ray.sweeps.report.paper import ABLATION_LABELS, PAPER_TABLE_4A, PAPER_TABLE_4B
from diod_ray.sweeps.report.results import mean_std, metric, pct
from diod_ray.sweeps.report.stats import summarise


def _ci_err(values) -> tuple[float, float]:
    """(below, above) error-bar lengths of the 95 % interval; 0 without one (n < 2)."""
    s = summarise(values)
    if s["ci_low"] is None:
        return 0.0, 0.0
    return s["mean"] - s["ci_low"], s["ci_high"] - s["mean"]


def alpha_burnin_plot(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> bytes:
    """Heatmaps over α × burn-in: F1 at the end of burn-in, after distillation, and the gain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = alpha_burnin_cells(stages)
    grid = next(s for s in meta["plan"]["stages"] if s["name"] == "distill")["grid"]
    alphas = [float(a) for a in grid["objectives.alpha"]]
    lengths = [int(e) for e in grid["schedule.burn_in_epochs"]]
    mats = {k: np.full((len(alphas), len(lengths)), np.nan) for k in ("burn_in", "final", "gain")}
    for i, a in enumerate(alphas):
        for j, e in enumerate(lengths):
            c = cells.get((a, e))
            if not c:
                continue
            b, d = mean_std(c["burn_in/f1"])[0], mean_std(c["final/f1"])[0]
            mats["burn_in"][i, j] = np.nan if b is None else b
            mats["final"][i, j] = np.nan if d is None else d
            if b is not None and d is not None:
                mats["gain"][i, j] = d - b
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 0.9 * len(alphas) + 2.2))
    titles = {
        "burn_in": "F1@50 (%) end of burn-in",
        "final": "F1@50 (%) after distillation",
        "gain": "gain (distillation − burn-in)",
    }
    shared = [mats["burn_in"], mats["final"]]
    finite = [m[np.isfinite(m)] for m in shared]
    lo = min((float(f.min()) for f in finite if f.size), default=0.0)
    hi = max((float(f.max()) for f in finite if f.size), default=1.0)
    for ax, key in zip(axes, ("burn_in", "final", "gain")):
        m = mats[key]
        kwargs = {"vmin": lo, "vmax": hi, "cmap": "viridis"} if key != "gain" else {"cmap": "RdBu"}
        if key == "gain" and np.isfinite(m).any():
            span = max(1e-6, float(np.nanmax(np.abs(m))))
            kwargs.update(vmin=-span, vmax=span)
        im = ax.imshow(m, aspect="auto", **kwargs)
        ax.set_xticks(range(len(lengths)), [str(e) for e in lengths])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("burn-in (epochs)")
        ax.set_ylabel("α")
        ax.set_title(titles[key], fontsize=10)
        for i in range(len(alphas)):
            for j in range(len(lengths)):
                if key == "final" and np.isfinite(mats["burn_in"][i, j]) and np.isfinite(m[i, j]):
                    text = f"{mats['burn_in'][i, j]:.1f}→{m[i, j]:.1f}"
                else:
                    text = "–" if not np.isfinite(m[i, j]) else f"{m[i, j]:.1f}"
                c = cells.get((alphas[i], lengths[j]))
                if c and key != "gain":
                    lo, hi = _ci_err(c[f"{key}/f1"])
                    if hi > 0:
                        text += f"\n±{(lo + hi) / 2:.1f}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white",
                    bbox={"facecolor": "black", "alpha": 0.35, "pad": 1, "linewidth": 0},
                )
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Table 4(c) reproduction — {meta.get('name', '')} ({meta.get('preset')})")
    fig.tight_layout()
    return _png(fig)


def ablations_plot(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = ablation_rows(stages)
    groups = [
        ("(a) design choices", ["one_to_one", "no_motion_masks", "final"], PAPER_TABLE_4A),
        (
            "(b) distillation vs offline",
            ["end_of_burn_in", "more_burn_in", "offline", "final"],
            PAPER_TABLE_4B,
        ),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (title, names, paper) in zip(axes, groups):
        x = np.arange(len(names))
        ours = [mean_std(rows[n]["f1"]) if n in rows else (None, None) for n in names]
        vals = [np.nan if m is None else m for m, _ in ours]
        errs = np.array([_ci_err(rows[n]["f1"]) if n in rows else (0.0, 0.0) for n in names]).T
        ax.bar(
            x - 0.2,
            vals,
            0.4,
            yerr=errs,
            capsize=3,
            label="ours (F1@50 %, 95 % CI)",
            color="tab:blue",
        )
        ax.bar(
            x + 0.2,
            [paper.get(n, np.nan) for n in names],
            0.4,
            label="paper, TRI-PD",
            color="tab:gray",
        )
        for xi, v in zip(x, vals):
            if np.isfinite(v):
                ax.text(xi - 0.2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
        labels = [textwrap.fill(ABLATION_LABELS[n], 16) for n in names]
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel("F1@50 (%)")
        ax.legend(fontsize=8)
    fig.suptitle(f"Table 4(a-b) reproduction — {meta.get('name', '')} ({meta.get('preset')})")
    fig.tight_layout()
    return _png(fig)


def threshold_plot(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = stages.get("search", {}).get("trials", [])
    fig, ax = plt.subplots(figsize=(6, 4))
    done = [(t["params"].get("distill.p"), pct(metric(t, "final", "f1"))) for t in trials]
    xs = [p for p, f in done if f is not None and p is not None]
    ys = [f for p, f in done if f is not None and p is not None]
    ax.scatter(xs, ys, label="finished (final F1@50)")
    stopped = [
        t
        for t in trials
        if metric(t, "final", "f1") is None and t.get("params", {}).get("distill.p") is not None
    ]
    if stopped:
        ax.scatter(
            [t["params"]["distill.p"] for t in stopped],
            [pct(t.get("metrics", {}).get("val/f1")) or 0.0 for t in stopped],
            marker="x",
            color="tab:red",
            label="stopped early (last val/f1)",
        )
    ax.axvline(0.9, color="gray", linestyle="--", linewidth=1, label="paper p = 0.9")
    ax.set_xlabel("threshold p")
    ax.set_ylabel("F1@50 (%)")
    ax.set_title(f"Optuna over p — {meta.get('name', '')}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
