"""``python -m diod_ray.train``: config -> TorchTrainer -> fit -> one JSON line of results.

With no arguments it runs the embedded default (the ``synthetic`` preset): generates the
synthetic shards if they are missing, starts or joins a local Ray, runs burn-in, distillation and
evaluation on the test split. On a cluster the same module runs under ``ray job submit``::

    ray job submit --working-dir . -- python -m diod_ray.train --preset tri-pd \\
        --set data.uri=s3://bucket/tri-pd run.storage_path=s3://bucket/runs run.num_workers=8 run.use_gpu=true

A run is ``(run.storage_path, run.name)``: running the same command again resumes it. The work is
done by :mod:`diod_ray.training.driver`; this module is its command line.
"""

from __future__ import annotations

import argparse
import json
import sys

from diod_ray.cli_errors import command_line
from diod_ray.config import add_config_args, config_from_args
from diod_ray.training.driver import run

__all__ = ["main", "run"]


@command_line("train")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diod_ray.train",
        description="Train DIOD (burn-in, then self-distillation) with Ray Train; "
        "prints one JSON line with the final metrics.",
    )
    add_config_args(parser)
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if not cfg.data.generate_if_missing:
        from diod_ray.data.shards.store import read_manifest

        # a missing train split fails here, before Ray starts (the driver checks it again)
        read_manifest(cfg.data.uri, cfg.data.train_split, cfg.storage)
    summary = run(cfg)
    print(json.dumps(summary, allow_nan=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
