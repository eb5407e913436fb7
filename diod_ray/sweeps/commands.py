"""The sweep commands: ``python -m diod_ray.sweeps COMMAND`` (and the scripts ``sweeps/*.py``, which
call these functions). Each takes ``argv`` and the ``prog`` its usage line shows, and returns the
exit status; a project error is one line on stderr and status 2 (:mod:`diod_ray.cli_errors`).

Ray Tune is imported only by the three sweeps, when they run (:mod:`diod_ray.sweeps.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from diod_ray.cli_errors import command_line
from diod_ray.sweeps.plan import ABLATION_VARIANTS


@command_line("sweeps alpha-burnin")
def alpha_burnin(argv: list[str] | None = None, prog: str = "alpha-burnin") -> int:
    """Table 4(c) of the paper: regularisation strength alpha x burn-in duration.

    Each cell reports F1@50 at the end of burn-in and after distillation (the paper's
    "16.9 → 35.4"), plus fg-ARI, all-ARI and static-object recall. One burn-in run per
    (alpha, seed) keeps checkpoints at every burn-in length; every distillation trial branches
    from one of them. Running the same command again resumes an interrupted sweep.
    """
    from diod_ray.sweeps.cli import main_for
    from diod_ray.sweeps.plan import alpha_burnin_plan

    def add_args(p: argparse.ArgumentParser) -> None:
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

    return main_for(
        build_plan, prog, help_line(alpha_burnin), "alpha-burnin", add_args=add_args, argv=argv
    )


@command_line("sweeps threshold-p")
def threshold_p(argv: list[str] | None = None, prog: str = "threshold-p") -> int:
    """Search the confidence threshold p (and optionally the EMA rate and alpha) with Optuna (TPE)
    and an ASHA scheduler whose grace period lies past the end of burn-in.

    One objective, val/f1 (max) on the validation split, for Optuna and ASHA; ASHA's clock is the
    epochs of distillation (``distill_epoch``), so its rungs halve the trials several times.
    Without --search-alpha, p and the EMA rate act only in distillation, so every trial branches
    from one shared burn-in run. Running the same command again resumes an interrupted search
    (Optuna's state included).
    """
    from diod_ray.sweeps.cli import main_for, threshold_search
    from diod_ray.sweeps.plan import threshold_plan

    def add_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--burn-in", type=int, default=3, help="burn-in epochs (paper: 400)")
        p.add_argument("--distill", type=int, default=4, help="distillation epochs (paper: 500)")
        p.add_argument("--trials", type=int, default=6, help="Optuna trials")
        p.add_argument("--p-min", type=float, default=0.5)
        p.add_argument("--p-max", type=float, default=0.99)
        p.add_argument("--search-ema", action="store_true", help="also search distill.ema")
        p.add_argument("--ema-min", type=float, default=0.99)
        p.add_argument("--ema-max", type=float, default=0.999)
        p.add_argument(
            "--search-alpha",
            action="store_true",
            help="also search objectives.alpha (then every trial trains its own burn-in)",
        )
        p.add_argument("--alpha-min", type=float, default=0.1)
        p.add_argument("--alpha-max", type=float, default=0.5)
        p.add_argument("--reduction-factor", type=int, default=2, help="ASHA reduction factor")
        p.add_argument("--search-seed", type=int, default=0, help="Optuna sampler seed")

    def build_plan(args):
        return threshold_plan(
            args.burn_in, args.distill, args.trials, args.search_alpha, args.search_ema, args.seeds
        )

    return main_for(
        build_plan,
        prog,
        help_line(threshold_p),
        "threshold-p",
        add_args=add_args,
        search_factory=threshold_search,
        argv=argv,
    )


@command_line("sweeps ablations")
def ablations(argv: list[str] | None = None, prog: str = "ablations") -> int:
    """Table 4(a) and 4(b) of the paper: one-to-one connection, no motion masks, offline
    pseudo-labelling against the final DIOD setting, all distillation branches of one burn-in.

    "end of burn-in" (Table 4(b)) is the evaluation each branch makes of the shared checkpoint.
    Running the same command again resumes an interrupted sweep.
    """
    from diod_ray.sweeps.cli import main_for
    from diod_ray.sweeps.plan import ablation_plan

    def add_args(p: argparse.ArgumentParser) -> None:
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

    return main_for(
        build_plan, prog, help_line(ablations), "ablations", add_args=add_args, argv=argv
    )


@command_line("sweeps report")
def report(argv: list[str] | None = None, prog: str = "report") -> int:
    """Regenerate a sweep's report (table.md, trials.csv, PNG plot) from its stored results.json
    files; needs no Ray."""
    from diod_ray.storage import normalise_uri
    from diod_ray.sweeps.report.files import write_report

    p = argparse.ArgumentParser(prog=prog, description=help_line(report))
    p.add_argument("sweep_dir", help="the sweep directory <storage>/<name> (local or s3://)")
    args = p.parse_args(argv)
    out = write_report(normalise_uri(args.sweep_dir))
    for what, uri in out.items():
        print(f"{what}: {uri}")
    return 0


@command_line("sweeps burn-in-length")
def burn_in_length(argv: list[str] | None = None, prog: str = "burn-in-length") -> int:
    """Choose the burn-in length for the ablation and Table 4(c) sweeps from one burn-in run's
    validation curve (never from test); the rule is in diod_ray/sweeps/burn_in_curve.py.

    The run: ``python -m diod_ray.train --set schedule.burn_in_epochs=40
    schedule.distill_epochs=0 run.val_every_epochs=2 run.val_clips=32 run.name=v2-burnin-curve``.
    """
    from diod_ray.sweeps.burn_in_curve import plateau_epoch, read_val_curve

    p = argparse.ArgumentParser(prog=prog, description=help_line(burn_in_length))
    p.add_argument("run_dir", help="a local run directory (<run.storage_path>/<run.name>)")
    p.add_argument("--metric", default="val/f1", help="the validation metric (default val/f1)")
    p.add_argument("--window", type=int, default=3, help="evaluations per moving average (odd)")
    p.add_argument("--tolerance", type=float, default=1.5, help="points below the best smoothed")
    args = p.parse_args(argv)
    curve = read_val_curve(os.path.expanduser(args.run_dir), args.metric)
    choice = plateau_epoch(curve, args.window, args.tolerance)
    for point in choice["curve"]:
        s = point["smoothed"]
        print(
            f"epoch {point['epoch']:4d}  {args.metric} {point['value']:5.1f}  "
            f"smoothed {'  –' if s is None else f'{s:5.1f}'}",
            file=sys.stderr,
        )
    print(json.dumps({"metric": args.metric, **choice}))
    return 0


def help_line(command: Callable) -> str:
    """A command's docstring up to its first blank line, on one line (its --help description)."""
    return " ".join(command.__doc__.split("\n\n")[0].split())


# name -> function, in the order ``python -m diod_ray.sweeps --help`` lists them
COMMANDS: dict[str, Callable[..., int]] = {
    "alpha-burnin": alpha_burnin,
    "threshold-p": threshold_p,
    "ablations": ablations,
    "report": report,
    "burn-in-length": burn_in_length,
}
