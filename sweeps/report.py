"""A sweep's report from its stored results: ``python -m diod_ray.sweeps report`` as a script.

    python sweeps/report.py ~/diod_ray_sweeps/alpha-burnin
    python sweeps/report.py s3://bucket/sweeps/ablations

The flags: ``--help``; what they do: docs/sweeps.md.
"""

import sys

from diod_ray.sweeps.commands import report as main

if __name__ == "__main__":
    sys.exit(main(prog="sweeps/report.py"))
