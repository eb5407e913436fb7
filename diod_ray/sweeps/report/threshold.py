"""``table.md`` of a threshold-p search (Optuna TPE + ASHA): the trials ranked by validation F1,
each with its parameters, status (finished or stopped by ASHA) and test metrics, the best
setting, and the cost."""

from __future__ import annotations

from typing import Any

from diod_ray.sweeps.report.cost import cost_section
from diod_ray.sweeps.report.results import completed, fmt, metric, pct


def threshold_markdown(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    trials = stages.get("search", {}).get("trials", [])
    ranked = sorted(trials, key=lambda t: -(metric(t, "val", "f1") or -1.0))
    out = [
        f"# Threshold p search (Optuna TPE + ASHA) — sweep `{meta.get('name', '')}`",
        "",
        f"Preset `{meta.get('preset')}`; overrides `{meta.get('overrides', {})}`. "
        f"Optuna and ASHA select on {meta.get('asha', {}).get('metric', 'val/f1')} (the "
        "validation split; test F1 only reported); ASHA's clock is epochs of distillation, "
        f"grace period {meta.get('asha', {}).get('grace_period', '?')}, rungs "
        f"{meta.get('asha', {}).get('rungs', '?')}, max_t "
        f"{meta.get('asha', {}).get('max_t', '?')}. The paper uses p = 0.9 (EMA 0.996, α 0.3); "
        "it has no table over p.",
        "",
        "| rank | trial | p | EMA | α | status | last epoch | F1@50 burn-in | F1@50 final | fg-ARI | all-ARI | static recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, t in enumerate(ranked, 1):
        p = t.get("params", {})
        m = t.get("metrics", {})
        status = t.get("status", "?")
        if completed(t) and metric(t, "final", "f1") is None:
            status = "stopped by ASHA"
        out.append(
            f"| {i} | {t.get('trial_id')} | {_g(p.get('distill.p'))} | {_g(p.get('distill.ema'))} | "
            f"{_g(p.get('objectives.alpha'))} | {status} | {m.get('epoch', '–')} | "
            f"{fmt(pct(metric(t, 'burn_in', 'f1')))} | {fmt(pct(metric(t, 'final', 'f1')))} | "
            f"{fmt(pct(metric(t, 'final', 'fg_ari')))} | {fmt(pct(metric(t, 'final', 'all_ari')))} | "
            f"{fmt(pct(metric(t, 'final', 'static_recall')))} |"
        )
    best = next((t for t in ranked if metric(t, "final", "f1") is not None), None)
    if best:
        out += [
            "",
            f"Best: `{ {k: v for k, v in best['params'].items() if not k.startswith('_')} }` "
            f"→ F1@50 {fmt(pct(metric(best, 'final', 'f1')))}",
        ]
    out += [""] + cost_section(meta, stages)
    return "\n".join(out)


def _g(v: Any) -> str:
    return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
