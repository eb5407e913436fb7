"""``python -m diod_ray.sweeps COMMAND [FLAGS]`` (installed as ``diod-sweeps``): the paper's Table 4
sweeps with Ray Tune, their reports, and the choice of the burn-in length (docs/sweeps.md).

    python -m diod_ray.sweeps alpha-burnin --dry-run      # the plan, reuse and estimated cost
    python -m diod_ray.sweeps report ~/diod_ray_sweeps/alpha-burnin
    python -m diod_ray.sweeps threshold-p --help           # one command's flags

``sweeps/*.py`` are the same commands as scripts (``python sweeps/alpha_burnin.py``).
"""

from __future__ import annotations

import argparse
import sys

from diod_ray.sweeps.commands import COMMANDS, help_line

PROG = "python -m diod_ray.sweeps"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="The paper's Table 4 sweeps with Ray Tune, their reports, and the choice of "
        "the burn-in length (docs/sweeps.md).",
        epilog=f"'{PROG} COMMAND --help' lists the flags of one command.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=help_line(command), add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Read the command name here; the command's own parser reads the rest of the line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    name = _parser().parse_args(argv[:1]).command
    return COMMANDS[name](argv[1:], prog=f"{PROG} {name}")


if __name__ == "__main__":
    sys.exit(main())
