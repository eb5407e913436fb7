"""Memory a running sweep trial holds on the node of its driver (the head on the cluster configs).

    python benchmarks/sweep_head_memory.py [--out FILE.json]

Starts a fresh local Ray (no dashboard) and measures, as resident set (RSS) and proportional set
(PSS, shared pages split between the processes that map them) from /proc:

- ``trial_driver``: a Ray actor that imports what a Tune trial driver imports before its fit
  (``diod_ray.sweeps.driver``, ``diod_ray.training.driver``, ``diod_ray.training.loop``: ray.tune,
  ray.train, ray.data, torch and the project);
- ``train_controller``: the Train V2 controller actor (process title ``ray::TrainController``)
  that a ``TorchTrainer.fit()`` started from that actor places on the actor's node, measured
  while a one-worker fit runs.

Prints one JSON object; ``diod_ray/sweeps/resources.py`` keeps the RSS figures as its per-trial
head memory (RSS: the conservative one; shared library pages count once per process).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

GB = 1e9


def _memory(pid: int | str = "self") -> dict[str, float]:
    """RSS and PSS of a process in GB, from /proc (Linux)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss_gb"] = int(line.split()[1]) * 1024 / GB
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss_gb"] = int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return {k: round(v, 3) for k, v in out.items()}


def _processes(title: str) -> list[int]:
    """PIDs whose command line starts with ``title`` (Ray sets actor process titles)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(title):
            pids.append(int(name))
    return pids


def _sleepy_loop(config):
    import time as _time

    import ray.train

    _time.sleep(config["seconds"])
    ray.train.report({"done": 1})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)

    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote(num_cpus=0)
    class TrialDriver:
        def imports(self) -> dict[str, float]:
            import diod_ray.sweeps.driver  # noqa: F401
            import diod_ray.training.driver  # noqa: F401
            import diod_ray.training.loop  # noqa: F401

            return _memory()

        def fit(self, storage: str, seconds: float) -> None:
            import ray.train
            from ray.train.torch import TorchTrainer

            TorchTrainer(
                _sleepy_loop,
                train_loop_config={"seconds": seconds},
                scaling_config=ray.train.ScalingConfig(num_workers=1),
                run_config=ray.train.RunConfig(name="head-memory", storage_path=storage),
            ).fit()

    import tempfile

    driver = TrialDriver.remote()
    trial_driver = ray.get(driver.imports.remote())
    with tempfile.TemporaryDirectory() as storage:
        running = driver.fit.remote(storage, 20.0)
        controller: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not controller:
            time.sleep(2)
            pids = _processes("ray::TrainController")
            if pids:
                time.sleep(8)  # the worker group is up and the loop runs by now
                controller = _memory(pids[0])
        ray.get(running)
    ray.shutdown()
    out = {
        "trial_driver": trial_driver,
        "train_controller": controller,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    text = json.dumps(out)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if controller else 1


if __name__ == "__main__":
    sys.exit(main())
