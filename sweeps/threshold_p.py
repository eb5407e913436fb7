"""Threshold p search (Optuna + ASHA): ``python -m diod_ray.sweeps threshold-p`` as a script.

    python sweeps/threshold_p.py                         # embedded default (synthetic, scaled)
    python sweeps/threshold_p.py --search-ema --trials 16 --dry-run

The flags: ``--help``; what they do: docs/sweeps.md.
"""

import sys

from diod_ray.sweeps.commands import threshold_p as main

if __name__ == "__main__":
    sys.exit(main(prog="sweeps/threshold_p.py"))
