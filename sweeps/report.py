"""Regenerate a sweep's report (table.md, trials.csv, PNG plot) from its stored results.json
files; needs no Ray.

    python sweeps/report.py ~/diod_ray_sweeps/alpha-burnin
    python sweeps/report.py s3://bucket/sweeps/ablations
"""

from __future__ import annotations

import argparse
import sys

from diod_ray.storage import normalise_uri
from diod_ray.sweeps.publish import write_report
from diod_ray.sweeps.report import ReportError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="sweeps/report.py", description=__doc__.split("\n")[0])
    p.add_argument("sweep_dir", help="the sweep directory <storage>/<name> (local or s3://)")
    args = p.parse_args(argv)
    try:
        out = write_report(normalise_uri(args.sweep_dir))
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for what, uri in out.items():
        print(f"{what}: {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
