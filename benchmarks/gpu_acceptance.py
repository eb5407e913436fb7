"""GPU acceptance: the figures a first CUDA machine owes this project, as ONE JSON document.

    bash benchmarks/gpu_acceptance.sh                 # CUDA if present, else the CPU toy path
    python benchmarks/gpu_acceptance.py --toy         # the CPU toy path (CI: tests/platform/test_gpu_acceptance.py)

Sections (each in its own subprocess with its own time limit, so one failure or hang is reported
in its section and the rest still run; the whole document is due in < 8 minutes on one GPU):

* ``train_step``: benchmarks/train_step.py's ``measure`` on the tri-pd preset (480x968, T=5,
  45 slots) at the per-worker batch of the paper run, after the loop's own set-up (cuDNN
  autotuning), fp32 and bf16: step time of both phases, clips/s, peak memory, model FLOP
  utilisation against the GPU's dense peak (bf16, and TF32 for fp32).
* ``deterministic``: the same bf16 step with ``run.deterministic`` off and on (diod_ray/training/loop.py
  ``seed_and_determinism``: what the training loop does), and the cost ratio; "unavailable" when
  this checkout has no such field.
* ``pseudo_labels`` / ``matching``: benchmarks/pseudo_labels.py and benchmarks/matching.py on the
  device, each against its CPU reference loop (the reference implementation's per-frame code).
* ``ddp``: ``python -m diod_ray.train --preset smoke`` on 2 Ray Train workers with one GPU each,
  when 2 GPUs exist (skipped otherwise, with the reason).
* ``data``: benchmarks/data_throughput.py's rendering and Ray Data read + decode + augment stream
  from local Parquet at tri-pd resolution, against what the bf16 training step consumes
  (``pipeline_over_consumption`` < 1 means the GPU would wait for data).

The toy path (``--toy``, the default without CUDA) runs the same sections with the same code at
toy sizes (smoke preset, 2 frames, small grids) so the script cannot rot; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECTIONS = ("train_step", "deterministic", "pseudo_labels", "matching", "ddp", "data")
# Dense peak TFLOP/s (bf16, tf32) by GPU name: NVIDIA data sheets (SXM parts; H200 = H100 compute).
PEAKS = {"H100": (989.0, 495.0), "H200": (989.0, 495.0), "A100": (312.0, 156.0)}


# ---------------------------------------------------------------------------------------------
# running one section: a child process that prints JSON as its last stdout line
# ---------------------------------------------------------------------------------------------


def _child(cmd: list[str], timeout: float) -> dict:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s: {' '.join(cmd[1:3])}"}
    wall = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}", "wall_s": wall}
    lines = proc.stdout.strip()
    # the scripts print one JSON object, some indented over several lines: parse from its start
    start = lines.rfind("\n{")
    try:
        out = json.loads(lines[start + 1 :] if start >= 0 else lines)
    except json.JSONDecodeError:
        return {"error": f"no JSON in the output: {lines[-500:]}", "wall_s": wall}
    out["wall_s"] = wall
    return out


def _me(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


# ---------------------------------------------------------------------------------------------
# in-child measurements that need a hook the other scripts do not have
# ---------------------------------------------------------------------------------------------


def _one_step(preset: str, device: str, batch: int, precision: str, deterministic: str) -> dict:
    """train_step.measure with the loop's determinism set-up applied first (fresh process)."""
    import torch

    sys.path.insert(0, str(HERE))
    import train_step

    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.training.loop import seed_and_determinism

    cfg = apply_overrides(load_preset(preset), {"run.deterministic": deterministic == "on"})
    seed_and_determinism(cfg, torch.device(device), 0)
    steps, warmup = (5, 2) if device.startswith("cuda") else (1, 0)
    r = train_step.measure(preset, device, batch, precision, steps, warmup)
    r["deterministic"] = deterministic == "on"
    return r


def _matching_toy() -> dict:
    """benchmarks/matching.py at a toy size: its workload constants scaled down (same code)."""
    import contextlib
    import io

    sys.path.insert(0, str(HERE))
    import matching

    # 1 clip x 2 frames at 96x192 (grid 24x48); slots and objects per frame as in the benchmark
    matching.B, matching.T, matching.H, matching.W, matching.h, matching.w = 1, 2, 96, 192, 24, 48
    buf = io.StringIO()
    sys.argv = ["matching.py", "--repeats", "1", "--threads", "1"]
    with contextlib.redirect_stdout(buf):
        matching.main()
    return json.loads(buf.getvalue())


def _data(resolution: tuple[int, int], clips: int) -> dict:
    """Rendering + the Ray Data training stream from local Parquet (data_throughput.py's code)."""
    sys.path.insert(0, str(HERE))
    import data_throughput as dt  # sets RAY_AUTH_MODE / usage stats before Ray is imported
    import ray

    from diod_ray.config import load_config
    from diod_ray.data.shards import store

    h, w = resolution
    cfg = load_config("synthetic", sets=[f"data.height={h}", f"data.width={w}"])
    out: dict = {"resolution": [h, w], "clips": clips}
    rendered, rates = dt.render(cfg, clips)
    out.update(rates)
    out["decode_augment_one_process_clips_s"] = dt.decode_augment(cfg, rendered)
    # a fresh local Ray, never one found through /tmp/ray (another cluster on this host)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        with tempfile.TemporaryDirectory() as tmp:
            store.write_split(tmp, "train", rendered, cfg.storage, clips_per_file=4)
            out["pipeline_local"] = dt.ray_pipeline(cfg, tmp)
    finally:
        ray.shutdown()
    out["cpu_count"] = os.cpu_count()
    return out


# ---------------------------------------------------------------------------------------------
# the sections
# ---------------------------------------------------------------------------------------------


def _peaks(gpu: str | None, args) -> tuple[float | None, float | None]:
    bf16, tf32 = next((v for k, v in PEAKS.items() if gpu and k in gpu), (None, None))
    return args.peak_tflops_bf16 or bf16, args.peak_tflops_tf32 or tf32


def _step(plan: dict, precision: str, deterministic: str) -> dict:
    one = [plan["preset"], plan["device"], str(plan["batch"]), precision, deterministic]
    return _child(_me("--one-step", *one), plan["timeout"])


def section_train_step(plan: dict, args) -> dict:
    """benchmarks/train_step.py's measurement of both phases, after the loop's own set-up (cuDNN
    autotuning on a GPU), fp32 and bf16, each in a fresh process (its own peak memory)."""
    bf16_peak, tf32_peak = _peaks(plan.get("gpu"), args)
    out = {}
    for precision, peak in (("fp32", tf32_peak), ("bf16", bf16_peak)):
        r = _step(plan, precision, "off")
        if "error" not in r:
            for phase in ("burn_in", "distill"):
                flops = r[f"train_tflop_per_step_{phase}"]
                r[f"mfu_{phase}"] = round(flops / r[f"{phase}_step_s"] / peak, 4) if peak else None
            r["mfu_peak_tflops"] = peak
        out[precision] = r
    return out


def section_deterministic(plan: dict, off: dict | None) -> dict:
    """The bf16 step again with ``run.deterministic`` on, against the train_step section's."""
    from diod_ray.config import Config

    if not hasattr(Config().run, "deterministic"):
        return {"status": "unavailable", "reason": "no run.deterministic in this checkout"}
    runs = {"off": off if off else _step(plan, "bf16", "off"), "on": _step(plan, "bf16", "on")}
    out: dict = {"precision": "bf16", "runs": runs}
    if all("error" not in r for r in runs.values()):
        for phase in ("burn_in", "distill"):
            key = f"{phase}_step_s"
            out[f"{phase}_cost_ratio"] = round(runs["on"][key] / runs["off"][key], 3)
    return out


def section_pseudo_labels(plan: dict) -> dict:
    cmd = [sys.executable, str(HERE / "pseudo_labels.py"), "--device", plan["device"]]
    cmd += plan["pseudo_label_args"]
    return _child(cmd, plan["timeout"])


def section_matching(plan: dict) -> dict:
    if plan["toy"]:
        return _child(_me("--matching-toy"), plan["timeout"])
    cmd = [sys.executable, str(HERE / "matching.py"), "--device", plan["device"]]
    return _child(cmd + ["--repeats", "3"], plan["timeout"])


def section_ddp(plan: dict) -> dict:
    gpus = plan["gpus"]
    if gpus < 2:
        return {"status": "skipped", "reason": f"needs 2 GPUs, found {gpus}"}
    with tempfile.TemporaryDirectory() as tmp:
        sets = [
            f"data.uri={tmp}/data",
            f"run.storage_path={tmp}/runs",
            "run.name=gpu-acceptance-ddp",
            "run.num_workers=2",
            "run.use_gpu=true",
        ]
        cmd = [sys.executable, "-m", "diod_ray.train", "--preset", "smoke", "--set", *sets]
        out = _child(cmd, plan["timeout"])
    out["status"] = "failed" if "error" in out else "ok"
    return out


def section_data(plan: dict, consumption_clips_s: float | None) -> dict:
    h, w = plan["data_resolution"]
    out = _child(_me("--data", str(h), str(w), str(plan["data_clips"])), plan["timeout"])
    best = out.get("pipeline_local", {}).get("clips_s_best_pass")
    out["training_consumes_clips_s"] = consumption_clips_s
    if best and consumption_clips_s:
        out["pipeline_over_consumption"] = round(best / consumption_clips_s, 3)
    return out


def make_plan(args) -> dict:
    import torch

    cuda = torch.cuda.is_available() and args.device != "cpu" and not args.toy
    gpus = torch.cuda.device_count() if cuda else 0
    if cuda:
        from diod_ray.config import load_preset

        tri = load_preset("tri-pd")
        return {
            "toy": False,
            "device": "cuda",
            "gpu": torch.cuda.get_device_name(),
            "gpus": gpus,
            "preset": "tri-pd",
            # the paper run's per-GPU share of its global batch (8 clips over 8 workers)
            "batch": args.batch or max(1, tri.data.batch_size // max(1, tri.run.num_workers)),
            "pseudo_label_args": ["--repeats", "3"],
            "data_resolution": (tri.data.height, tri.data.width),
            "data_clips": 8,
            "timeout": 240,
        }
    return {
        "toy": True,
        "device": "cpu",
        "gpu": None,
        "gpus": 0,
        "preset": "smoke",
        "batch": args.batch or 1,
        "pseudo_label_args": ["--clips", "1", "--frames", "1", "--repeats", "1", "--threads", "1"],
        "data_resolution": (32, 64),
        "data_clips": 2,
        "timeout": 240,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--toy", action="store_true", help="the CPU toy path (default without CUDA)")
    p.add_argument("--batch", type=int, default=0, help="clips per train step (0 = per-worker)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--peak-tflops-bf16", type=float, default=0.0, help="override the GPU table")
    p.add_argument("--peak-tflops-tf32", type=float, default=0.0, help="override the GPU table")
    p.add_argument("--out", default="", help="also write the JSON document to this file")
    # child entry points (one measurement per fresh process)
    p.add_argument("--one-step", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--matching-toy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one_step:
        preset, device, batch, precision, mode = args.one_step
        print(json.dumps(_one_step(preset, device, int(batch), precision, mode)))
        return 0
    if args.matching_toy:
        print(json.dumps(_matching_toy()))
        return 0
    if args.data:
        h, w, n = args.data
        print(json.dumps(_data((h, w), n)))
        return 0

    t0 = time.perf_counter()
    plan = make_plan(args)
    doc: dict = {
        "benchmark": "gpu_acceptance",
        "toy": plan["toy"],
        "device": plan["device"],
        "gpu": plan["gpu"],
        "gpu_count": plan["gpus"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "commit": _commit(),
        "plan": {k: plan[k] for k in ("preset", "batch", "data_resolution", "data_clips")},
    }
    chosen = set(args.sections)
    runners = {
        "train_step": lambda: section_train_step(plan, args),
        "deterministic": lambda: section_deterministic(plan, doc.get("train_step", {}).get("bf16")),
        "pseudo_labels": lambda: section_pseudo_labels(plan),
        "matching": lambda: section_matching(plan),
        "ddp": lambda: section_ddp(plan),
        "data": lambda: section_data(
            plan, doc.get("train_step", {}).get("bf16", {}).get("clips_per_s_burn_in")
        ),
    }
    for name in SECTIONS:
        if name in chosen:
            doc[name] = runners[name]()
            # written after every section: a time limit or a machine taken back mid-way still
            # leaves the finished sections on disk
            _finish(doc, t0, args.out)
    print(json.dumps(_finish(doc, t0, args.out), indent=1))
    return 0


def _finish(doc: dict, t0: float, out: str | None) -> dict:
    doc["errors"] = sorted(k for k in SECTIONS if isinstance(doc.get(k), dict) and _failed(doc[k]))
    doc["total_wall_s"] = round(time.perf_counter() - t0, 1)
    if out:
        Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def _failed(section: dict) -> bool:
    """An "error" anywhere in the section (a precision, a deterministic run, ...)."""
    return "error" in section or any(isinstance(v, dict) and _failed(v) for v in section.values())


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
