"""``python -m diod_ray.evaluate``: evaluate a checkpoint on a split of clip shards.

    python -m diod_ray.evaluate --checkpoint URI --data URI [--protocol reference|clean]
        [--split test] [--out FILE.json] [--overwrite] [--save-examples N] [--examples-dir DIR]
        [--device auto|cpu|cuda] [--batch-size B] [--weights student|teacher] [--set KEY=VALUE ...]

streams the shards through Ray Data (``eval_dataset``), runs the model in inference mode in
batches (:func:`diod_ray.inference.evaluate_model`), and prints one JSON object with every metric,
the number of clips and frames, the checkpoint and the protocol (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from diod_ray.cli_errors import UsageError, command_line
from diod_ray.config import ConfigError, add_set_argument, apply_overrides, parse_set
from diod_ray.inference import (
    PROTOCOLS,
    evaluate_model,
    load_for_inference,
    resolve_device,
)
from diod_ray.storage import json_safe


def _safe_name(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in s)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m diod_ray.evaluate",
        description="Evaluate a diod_ray checkpoint on a split of clip shards "
        "(fg-ARI, all-ARI, F1@50, static/moving recall, mBO).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (local or s3://)")
    p.add_argument("--data", default=None, help="shard URI (default: the checkpoint's data.uri)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="clean")
    p.add_argument("--split", default=None, help="split to evaluate (default data.test_split)")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / examples")
    p.add_argument("--save-examples", type=int, default=0, metavar="N", help="PNG grids of N clips")
    p.add_argument("--examples-dir", default=None, help="default: <out stem>_examples/")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=None, help="default run.eval_batch_size")
    p.add_argument("--weights", choices=("student", "teacher"), default=None)
    p.add_argument(
        "--pseudo-labels",
        action="store_true",
        help="also rate the pseudo-labels these weights give as the teacher (the checkpoint's "
        "distill.* settings): kept per frame, GT precision, object cover, kept_area "
        "(docs/teacher.md); a second pass over the split",
    )
    p.add_argument(
        "--preconditions",
        action="store_true",
        help="also measure the preconditions of a test of DIOD's claim on these weights as the "
        "end of burn-in (the gates and the verdict, diod_ray/preconditions.py, docs/teacher.md); "
        "two more passes over the split. Gates are read on val: pass --split val",
    )
    add_set_argument(p, help="override data.* / run.* keys of the checkpoint's config")
    return p


def _examples_dir(args) -> Path | None:
    if args.save_examples <= 0:
        return None
    if args.examples_dir:
        d = Path(args.examples_dir)
    elif args.out:
        out = Path(args.out)
        d = out.with_name(out.stem + "_examples")
    else:
        raise UsageError("--save-examples needs --examples-dir or --out")
    if d.exists() and any(d.iterdir()) and not args.overwrite:
        raise UsageError(f"--examples-dir {d} is not empty (use --overwrite)")
    return d


def _preconditions(model, cfg, ds, batch_size, device, protocol, split) -> dict:
    """The gates of :mod:`diod_ray.preconditions` with these weights as the end of burn-in: the
    teacher is made from them exactly as the switch makes it (:func:`~diod_ray.teacher.
    build_teacher`), so a kept burn-in checkpoint is rated as a distillation branch from it would
    be at its switch."""
    from diod_ray.data.streaming.batches import iter_eval_batches
    from diod_ray.preconditions import measure_preconditions, summary_json
    from diod_ray.teacher import build_teacher

    teacher = build_teacher(model, cfg)
    values = measure_preconditions(
        model,
        teacher,
        lambda: iter_eval_batches(ds, cfg, batch_size, device),
        cfg,
        protocol=protocol,
    )
    return summary_json(values, split)


@command_line("evaluate")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.out and os.path.exists(args.out) and not args.overwrite:
        raise UsageError(f"--out {args.out} exists; pass --overwrite to replace it")
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    ex_dir = _examples_dir(args)
    device = resolve_device(args.device)

    model, cfg, which = load_for_inference(args.checkpoint, args.weights, device)
    sets = dict(parse_set(s) for s in args.sets)
    bad = [k for k in sets if not k.startswith(("data.", "run."))]
    if bad:
        raise ConfigError(f"--set {bad[0]}: only data.* and run.* keys apply to a trained model")
    if args.data:
        sets["data.uri"] = args.data
    cfg = apply_overrides(cfg, sets)

    from diod_ray.data.streaming.batches import iter_eval_batches
    from diod_ray.data.streaming.datasets import eval_dataset
    from diod_ray.training.driver import ensure_ray

    # joins RAY_ADDRESS when set, else a fresh local Ray; Ray Data's per-execution console blocks
    # go to Ray's log files, as in training
    ensure_ray()
    split = args.split or cfg.data.test_split
    bs = args.batch_size or cfg.run.eval_batch_size
    sink = None
    if ex_dir is not None:
        from diod_ray.viz import write_png

        ex_dir.mkdir(parents=True, exist_ok=True)

        def sink(name: str, img: np.ndarray) -> None:
            write_png(ex_dir / f"{_safe_name(name)}.png", img)

    ds = eval_dataset(cfg, split)
    result = evaluate_model(
        model,
        iter_eval_batches(ds, cfg, bs, device),
        cfg,
        args.protocol,
        max_examples=args.save_examples,
        example_sink=sink,
        slots_title=f"{which} slots",
    )
    if args.pseudo_labels:
        from diod_ray.teacher_diagnostics import evaluate_teacher

        batches = iter_eval_batches(ds, cfg, bs, device)
        result["pseudo_labels"] = evaluate_teacher(model, batches, cfg)
    if args.preconditions:
        result["preconditions"] = _preconditions(model, cfg, ds, bs, device, args.protocol, split)
    result = {
        **result,
        "checkpoint": args.checkpoint,
        "weights": which,
        "data": cfg.data.uri,
        "split": split,
        "device": str(device),
        "batch_size": bs,
    }
    if ex_dir is not None:
        result["examples_dir"] = str(ex_dir)
    text = json.dumps(json_safe(result), sort_keys=False, allow_nan=False)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        tmp.write_text(text + "\n")
        if out.exists() and not args.overwrite:  # appeared while we were evaluating
            tmp.unlink()
            raise UsageError(f"--out {out} exists; pass --overwrite to replace it")
        os.replace(tmp, out)
    print(text)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
