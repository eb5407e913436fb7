"""Training throughput of the default job with the cores split as configured, against the old split.

    python benchmarks/default_job_cores.py [--epochs 2] [--preset synthetic] [--out FILE.json]

Runs the default preset's burn-in for ``--epochs`` epochs twice, each in a fresh process with a
fresh local Ray, and prints one JSON object with the clips/s TensorBoard logged
(``perf/clips_per_s``; the first logging interval, which includes start-up, is left out):

- ``before``: the old default, the loop in the driver (``run.num_workers=0``) with torch using
  every core (``run.cpus_per_worker`` = the machine's cores), so torch's threads and Ray Data's
  decode/augment tasks compete for the same cores;
- ``after``: today's default, one Train worker holding ``run.cpus_per_worker=1`` CPU, torch's
  threads set to it, Ray Data's tasks on the remaining cores.

Both use the same shards, seed and schedule; the machine's load average is recorded beside each
figure (docs/performance.md, "Cores").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _clips_per_s(tb_dir: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(tb_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("perf/clips_per_s")]


def run_one(name: str, preset: str, epochs: int, storage: str, extra: list[str]) -> dict:
    sets = [
        f"run.name={name}",
        f"run.storage_path={storage}",
        f"schedule.burn_in_epochs={epochs}",
        "schedule.distill_epochs=0",
        "run.evaluate_at_end=false",
        "run.val_every_epochs=0",
        "run.image_every_steps=0",
        *extra,
    ]
    cmd = [sys.executable, "-m", "diod_ray.train", "--preset", preset, "--set", *sets]
    load0, t0 = _load(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    values = _clips_per_s(os.path.join(storage, name, "tensorboard"))
    steady = values[1:] or values  # the first interval includes start-up and the first batches
    return {
        "settings": extra,
        "clips_per_s_median": round(statistics.median(steady), 2),
        "clips_per_s_intervals": [round(v, 2) for v in steady],
        "wall_s": round(wall, 1),
        "load_before": load0,
        "load_after": _load(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="synthetic")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="diod-cores-") as storage:
        before = run_one(
            "before",
            args.preset,
            args.epochs,
            storage,
            ["run.num_workers=0", f"run.cpus_per_worker={cores}"],
        )
        after = run_one(
            "after",
            args.preset,
            args.epochs,
            storage,
            ["run.num_workers=1", "run.cpus_per_worker=1"],
        )
    doc = {
        "benchmark": "default_job_cores",
        "preset": args.preset,
        "epochs": args.epochs,
        "cpu_count": cores,
        "before": before,
        "after": after,
        "speedup": round(after["clips_per_s_median"] / before["clips_per_s_median"], 3),
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
