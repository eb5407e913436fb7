"""Table 4(a) and 4(b) of the paper: one-to-one connection, no motion masks, offline
pseudo-labelling against the final DIOD setting, all distillation branches of one burn-in.

    python sweeps/ablations.py                 # embedded default (synthetic, scaled)
    python sweeps/ablations.py --dry-run
    python sweeps/ablations.py --preset tri-pd --burn-in 400 --distill 500 --storage s3://bucket/sweeps

"end of burn-in" (Table 4(b)) is the evaluation each branch makes of the shared checkpoint.
Running the same command again resumes an interrupted sweep.
"""

from __future__ import annotations

import sys

from diod_ray.sweeps.cli import main_for
from diod_ray.sweeps.plan import ABLATION_VARIANTS, ablation_plan


def add_args(p) -> None:
    p.add_argument("--burn-in", type=int, default=4, help="burn-in epochs (paper: 400)")
    p.add_argument("--distill", type=int, default=3, help="distillation epochs (paper: 500)")
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(ABLATION_VARIANTS),
        choices=list(ABLATION_VARIANTS),
        help="which distillation variants to run",
    )


def build_plan(args):
    return ablation_plan(args.burn_in, args.distill, args.seeds, args.variants)


def main(argv: list[str] | None = None) -> int:
    return main_for(
        build_plan,
        "sweeps/ablations.py",
        __doc__.split("\n")[0],
        "ablations",
        add_args=add_args,
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
