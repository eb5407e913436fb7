"""Choose the burn-in length for the ablation and Table 4(c) sweeps from one burn-in run's
validation curve (never from test); the rule is in diod_ray/sweeps/burn_in_curve.py.

    python -m diod_ray.train --set schedule.burn_in_epochs=40 schedule.distill_epochs=0 \\
        run.val_every_epochs=2 run.val_clips=32 run.name=v2-burnin-curve
    python sweeps/burn_in_length.py ~/diod_ray_runs/v2-burnin-curve
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from diod_ray.sweeps.burn_in_curve import CurveError, plateau_epoch, read_val_curve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweeps/burn_in_length.py", description=__doc__.split("\n")[0])
    p.add_argument("run_dir", help="a local run directory (<run.storage_path>/<run.name>)")
    p.add_argument("--metric", default="val/f1", help="the validation metric (default val/f1)")
    p.add_argument("--window", type=int, default=3, help="evaluations per moving average (odd)")
    p.add_argument("--tolerance", type=float, default=1.5, help="points below the best smoothed")
    args = p.parse_args(argv)
    try:
        curve = read_val_curve(os.path.expanduser(args.run_dir), args.metric)
        choice = plateau_epoch(curve, args.window, args.tolerance)
    except CurveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for point in choice["curve"]:
        s = point["smoothed"]
        print(
            f"epoch {point['epoch']:4d}  {args.metric} {point['value']:5.1f}  "
            f"smoothed {'  –' if s is None else f'{s:5.1f}'}",
            file=sys.stderr,
        )
    print(json.dumps({"metric": args.metric, **choice}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
