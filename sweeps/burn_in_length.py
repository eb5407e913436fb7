"""The burn-in length from a run's validation curve: ``python -m diod_ray.sweeps burn-in-length``
as a script.

    python -m diod_ray.train --set schedule.burn_in_epochs=40 schedule.distill_epochs=0 \\
        run.val_every_epochs=2 run.val_clips=32 run.name=v2-burnin-curve
    python sweeps/burn_in_length.py ~/diod_ray_runs/v2-burnin-curve

The flags: ``--help``; what they do: docs/sweeps.md.
"""

import sys

from diod_ray.sweeps.commands import burn_in_length as main

if __name__ == "__main__":
    sys.exit(main(prog="sweeps/burn_in_length.py"))
