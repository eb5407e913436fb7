"""Table 4(c) of the paper: regularisation strength alpha x burn-in duration.

Each cell reports F1@50 at the end of burn-in and after distillation (the paper's "16.9 → 35.4"),
plus fg-ARI, all-ARI and static-object recall. One burn-in run per (alpha, seed) keeps checkpoints
at every burn-in length; every distillation trial branches from one of them.

    python sweeps/alpha_burnin.py                      # embedded default (synthetic, scaled)
    python sweeps/alpha_burnin.py --dry-run            # the plan, reuse and estimated cost
    python sweeps/alpha_burnin.py --preset tri-pd --burn-in 200 300 400 --distill 500 \\
        --set data.uri=s3://bucket/tri-pd --storage s3://bucket/sweeps     # the paper's scale

Running the same command again resumes an interrupted sweep.
"""

from __future__ import annotations

import sys

from diod_ray.sweeps.cli import main_for
from diod_ray.sweeps.plan import alpha_burnin_plan


def add_args(p) -> None:
    p.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=[0.2, 0.3, 0.4],
        help="objectives.alpha values (paper: 0.2 0.3 0.4)",
    )
    p.add_argument(
        "--burn-in",
        type=int,
        nargs="+",
        default=[2, 3, 4],
        help="burn-in lengths in epochs (paper: 200 300 400)",
    )
    p.add_argument("--distill", type=int, default=3, help="distillation epochs (paper: 500)")


def build_plan(args):
    return alpha_burnin_plan(args.alphas, args.burn_in, args.distill, args.seeds)


def main(argv: list[str] | None = None) -> int:
    return main_for(
        build_plan,
        "sweeps/alpha_burnin.py",
        __doc__.split("\n")[0],
        "alpha-burnin",
        add_args=add_args,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
