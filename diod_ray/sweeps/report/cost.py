"""The "Cost and reuse" section that ends every ``table.md``: epochs trained against the naive
grid's, and the device-hours the burn-in reuse saved at the measured seconds per epoch."""

from __future__ import annotations

from typing import Any

from diod_ray.sweeps.plan import device_hours
from diod_ray.sweeps.report.results import seconds_per_epoch


def cost_section(meta: dict[str, Any], stages: dict[str, dict[str, Any]]) -> list[str]:
    ep = meta["plan"]["epochs"]
    kind = meta.get("resources", {}).get("device", "CPU")
    per_trial = meta.get("resources", {}).get("per_trial", {})
    per_trial = per_trial.get("total", per_trial)  # {"driver", "workers", "total"}
    lines = [
        "## Cost and reuse",
        "",
        f"- epochs trained: {ep['burn_in']} burn-in + {ep['distill']} distillation = "
        f"{ep['burn_in'] + ep['distill']}; the naive grid (every trial its own burn-in) trains "
        f"{ep['naive_burn_in']} + {ep['naive_distill']} = {ep['naive_burn_in'] + ep['naive_distill']}"
        f" → **{ep['saved']} epochs saved**",
    ]
    burn = stages.get("burn_in")
    rate_b = seconds_per_epoch(burn) if burn else None
    rate_d = None
    for name, stage in stages.items():
        if name != "burn_in":
            rate_d = seconds_per_epoch(stage)
    if rate_b is not None and ep["saved"]:
        hours = device_hours(ep["saved"], rate_b, per_trial, kind)
        lines.append(
            f"- measured {rate_b:.2f} s per burn-in epoch"
            + (f", {rate_d:.2f} s per distillation epoch" if rate_d else "")
            + " (trial wall time minus in-run evaluations, over epochs; start-up included), "
            f"{per_trial.get(kind, 0):g} {kind}(s) per trial → the reuse saved "
            f"**{hours:.3f} {kind}-hours** ({ep['saved'] * rate_b / 60:.1f} trial-minutes)"
        )
    elif ep["saved"]:
        lines.append("- no finished burn-in trials yet: seconds per epoch not measured")
    return lines + [""]
