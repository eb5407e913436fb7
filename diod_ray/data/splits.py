"""Which split a run validates on: ``data.val_split`` when the URI has it, else test (once said).

Per-epoch validation (``val/*``, what ASHA and Optuna select on) and every early choice read the
val split; the test split is only reported (burn_in/*, final/*). Shard folders written before val
splits existed keep working: validation then uses the first ``run.val_clips`` clips of the test
split, and the job says so once per URI (docs/data.md, "Splits").
"""

from __future__ import annotations

import sys

from diod_ray.config import Config
from diod_ray.data.shards.store import split_exists

_warned: set[tuple[str, str]] = set()


def fallback_message(cfg: Config) -> str:
    d = cfg.data
    regen = (
        f"python -m diod_ray.data generate --preset <preset> --split {d.val_split} --out {d.uri}"
        if d.generate_if_missing
        else f"python -m diod_ray.data convert ... --split {d.val_split} --out {d.uri}"
    )
    return (
        f"[diod_ray] no {d.val_split!r} split under {d.uri}: per-epoch validation uses the first "
        f"{cfg.run.val_clips} clips of {d.test_split!r}, so val/* and final/* share clips; "
        f"write one with `{regen}`"
    )


def resolve_val_split(cfg: Config, *, warn: bool = True) -> str:
    """``data.val_split`` if ``data.uri`` has it, else ``data.test_split`` (warning once per URI)."""
    d = cfg.data
    if split_exists(d.uri, d.val_split, cfg.storage):
        return d.val_split
    key = (d.uri, d.val_split)
    if warn and key not in _warned:
        _warned.add(key)
        print(fallback_message(cfg), file=sys.stderr, flush=True)
    return d.test_split
