"""Table 4(c) of the paper, alpha x burn-in: ``python -m diod_ray.sweeps alpha-burnin`` as a script.

    python sweeps/alpha_burnin.py                      # embedded default (synthetic, scaled)
    python sweeps/alpha_burnin.py --dry-run            # the plan, reuse and estimated cost
    python sweeps/alpha_burnin.py --preset tri-pd --burn-in 200 300 400 --distill 500 \\
        --set data.uri=s3://bucket/tri-pd --storage s3://bucket/sweeps     # the paper's scale

The flags: ``--help``; what they do: docs/sweeps.md.
"""

import sys

from diod_ray.sweeps.commands import alpha_burnin as main

if __name__ == "__main__":
    sys.exit(main(prog="sweeps/alpha_burnin.py"))
