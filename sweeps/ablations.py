"""Table 4(a)/(b) ablations: ``python -m diod_ray.sweeps ablations`` as a script.

    python sweeps/ablations.py                 # embedded default (synthetic, scaled)
    python sweeps/ablations.py --dry-run
    python sweeps/ablations.py --preset tri-pd --burn-in 400 --distill 500 --storage s3://bucket/sweeps

The flags: ``--help``; what they do: docs/sweeps.md.
"""

import sys

from diod_ray.sweeps.commands import ablations as main

if __name__ == "__main__":
    sys.exit(main(prog="sweeps/ablations.py"))
