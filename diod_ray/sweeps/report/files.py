"""Writing a sweep's report files from its stored results: ``table.md`` (:mod:`.alpha_burnin`,
:mod:`.ablations` or :mod:`.threshold`, by the sweep's kind), ``trials.csv`` and ``cells.csv``
(:mod:`.csv_files`), ``<kind>.png`` (:mod:`.plots`) and, when its trials measured the
preconditions at their switch, ``gates.csv`` (:mod:`.gates`)."""

from __future__ import annotations

from diod_ray.sweeps.report import plots
from diod_ray.sweeps.report.ablations import ablations_markdown
from diod_ray.sweeps.report.alpha_burnin import alpha_burnin_markdown
from diod_ray.sweeps.report.csv_files import cells_csv, trials_csv
from diod_ray.sweeps.report.gates import gates_csv
from diod_ray.sweeps.report.results import (
    CELLS_FILE,
    CSV_FILE,
    GATES_FILE,
    SWEEP_FILE,
    TABLE_FILE,
    ReportError,
    load_sweep,
)
from diod_ray.sweeps.report.threshold import threshold_markdown
from diod_ray.sweeps.store import join, write_bytes


def write_report(root: str, settings=None) -> dict[str, str]:
    """(Re)write table.md, trials.csv, cells.csv, <kind>.png (and gates.csv) of the sweep at
    ``root``; returns their URIs.
    ``settings``: the config's ``storage:`` section (else the environment's endpoint)."""
    meta, stages = load_sweep(root, settings)
    kind = meta["kind"]
    if kind not in ("alpha_burnin", "ablations", "threshold_p"):
        raise ReportError(f"{join(root, SWEEP_FILE)}: unknown kind {kind!r}")
    renderers = {
        "alpha_burnin": (alpha_burnin_markdown, plots.alpha_burnin_plot),
        "ablations": (ablations_markdown, plots.ablations_plot),
        "threshold_p": (threshold_markdown, plots.threshold_plot),
    }
    to_md, to_png = renderers[kind]
    out = {
        "table": join(root, TABLE_FILE),
        "csv": join(root, CSV_FILE),
        "cells": join(root, CELLS_FILE),
        "plot": join(root, f"{kind}.png"),
    }
    write_bytes(out["table"], (to_md(meta, stages) + "\n").encode(), settings)
    write_bytes(out["csv"], trials_csv(stages).encode(), settings)
    write_bytes(out["cells"], cells_csv(meta, stages).encode(), settings)
    write_bytes(out["plot"], to_png(meta, stages), settings)
    gates = gates_csv(stages, meta.get("premise"))
    if gates is not None:  # trials that measured the preconditions (issue 21)
        out["gates"] = join(root, GATES_FILE)
        write_bytes(out["gates"], gates.encode(), settings)
    return out
