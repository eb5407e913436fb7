"""Search the confidence threshold p (and optionally the EMA rate and alpha) with Optuna (TPE)
and an ASHA scheduler whose grace period lies past the end of burn-in.

One objective, val/f1 (max) on the validation split, for Optuna and ASHA; ASHA's clock is the
epochs of distillation (``distill_epoch``), so its rungs halve the trials several times.
Without --search-alpha, p and the EMA rate act only in distillation, so every trial branches from
one shared burn-in run.

    python sweeps/threshold_p.py                         # embedded default (synthetic, scaled)
    python sweeps/threshold_p.py --search-ema --trials 16 --dry-run

Running the same command again resumes an interrupted search (Optuna's state included).
"""

from __future__ import annotations

import sys

from diod_ray.sweeps.cli import main_for, threshold_search
from diod_ray.sweeps.plan import threshold_plan


def add_args(p) -> None:
    p.add_argument("--burn-in", type=int, default=3, help="burn-in epochs (paper: 400)")
    p.add_argument("--distill", type=int, default=4, help="distillation epochs (paper: 500)")
    p.add_argument("--trials", type=int, default=6, help="Optuna trials")
    p.add_argument("--p-min", type=float, default=0.5)
    p.add_argument("--p-max", type=float, default=0.99)
    p.add_argument("--search-ema", action="store_true", help="also search distill.ema")
    p.add_argument("--ema-min", type=float, default=0.99)
    p.add_argument("--ema-max", type=float, default=0.999)
    p.add_argument(
        "--search-alpha",
        action="store_true",
        help="also search objectives.alpha (then every trial trains its own burn-in)",
    )
    p.add_argument("--alpha-min", type=float, default=0.1)
    p.add_argument("--alpha-max", type=float, default=0.5)
    p.add_argument("--reduction-factor", type=int, default=2, help="ASHA reduction factor")
    p.add_argument("--search-seed", type=int, default=0, help="Optuna sampler seed")


def build_plan(args):
    return threshold_plan(
        args.burn_in, args.distill, args.trials, args.search_alpha, args.search_ema, args.seeds
    )


def main(argv: list[str] | None = None) -> int:
    return main_for(
        build_plan,
        "sweeps/threshold_p.py",
        __doc__.split("\n")[0],
        "threshold-p",
        add_args=add_args,
        search_factory=threshold_search,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
