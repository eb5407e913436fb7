"""Which teacher defaults make distillation active? A short, CPU-sized measurement (docs/teacher.md).

One burn-in of the synthetic preset's model on generated clips with their optical-flow motion
masks (plain PyTorch, no Ray), then several distillation branches from that same burn-in state,
each for the same number of steps:

* ``attention/paper``: candidates scored by their own slot's attention (the former default);
* ``foreground/paper``: scored by the teacher's mean W_fg (the authors' code);
* ``foreground/reference``: the same with the reference's loss normalisation (sum over frames / B);
* ``control``: more burn-in instead of distillation (same steps, same learning rate).

It prints one JSON object: per branch the teacher's activity over its steps (candidates kept per
frame, frames with a kept candidate, motion masks kept, mean teacher term of eq. 5) and, on a
validation split (never the test split), the student's F1@50 / static recall and the teacher's
GT-based diagnostics (precision of kept candidates, static / moving GT covered). Example::

    python benchmarks/teacher_defaults.py --seeds 0 --burn-in 200 --distill 96 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from diod_ray.config import load_preset
from diod_ray.data.motion import motion_masks
from diod_ray.data.streaming.augment import augment_clip
from diod_ray.data.synthetic.render import generate_video
from diod_ray.inference import evaluate_model
from diod_ray.model import build_model
from diod_ray.objectives.burn_in import burn_in_loss
from diod_ray.objectives.distill import distill_loss
from diod_ray.teacher import build_teacher
from diod_ray.teacher_diagnostics import TeacherActivity, evaluate_teacher

BRANCHES = {
    "attention/paper": {"distill.score_source": "attention", "objectives.normalisation": "paper"},
    "foreground/paper": {"distill.score_source": "foreground", "objectives.normalisation": "paper"},
    "foreground/reference": {
        "distill.score_source": "foreground",
        "objectives.normalisation": "reference",
    },
    "control": {},
}


def norm(x: np.ndarray) -> torch.Tensor:
    """uint8 [B, T, H, W, 3] -> float [B, T, 3, H, W] in [-1, 1] (the pipeline's normalisation)."""
    return torch.from_numpy(x).float().div(255).sub(0.5).div(0.5).permute(0, 1, 4, 2, 3)


def make_clips(cfg, split: str, n: int):
    d = cfg.data
    out = []
    for i in range(n):
        v = generate_video(d.synthetic, d.height, d.width, split, i)
        out.append((v, motion_masks(v.frames, d.flow, d.min_mask_pixels)))
    return out


def train_batch(cfg, clips, rng, batch: int):
    idx = rng.choice(len(clips), size=batch, replace=False)
    weak, strong, motion = [], [], []
    for i in idx:
        v, m = clips[i]
        w, s, mm = augment_clip(v.frames, m.astype(np.uint16), cfg.data.augment, rng)
        weak.append(w)
        strong.append(s)
        motion.append(mm.astype(np.int64))
    return norm(np.stack(weak)), norm(np.stack(strong)), torch.from_numpy(np.stack(motion))


def eval_batches(clips, batch: int = 8):
    out = []
    for s in range(0, len(clips), batch):
        part = clips[s : s + batch]
        g = max(int(v.moving.shape[1]) for v, _ in part)
        moving = np.zeros((len(part), part[0][0].moving.shape[0], g), dtype=bool)
        for j, (v, _) in enumerate(part):
            moving[j, :, : v.moving.shape[1]] = v.moving
        out.append(
            {
                "frames": norm(np.stack([v.frames for v, _ in part])),
                "gt": torch.from_numpy(np.stack([v.gt for v, _ in part])).long(),
                "gt_moving": torch.from_numpy(moving),
                "motion": torch.from_numpy(np.stack([m for _, m in part])).long(),
            }
        )
    return out


def step(model, opt, cfg, batch, teacher=None):
    weak, strong, motion = batch
    out = model(strong)
    if teacher is None:
        res = burn_in_loss(
            out, motion, strong, cfg.objectives, model.bg_index, max_objects=cfg.data.max_objects
        )
    else:
        res = distill_loss(
            out,
            teacher(weak),
            motion,
            strong,
            cfg.objectives,
            cfg.distill,
            model.bg_index,
            max_objects=cfg.data.max_objects,
        )
    opt.zero_grad(set_to_none=True)
    res.total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
    opt.step()
    if teacher is not None:
        teacher.update(model)
    return res


def measure(model, cfg, val, teacher=None) -> dict:
    s = evaluate_model(model, val, cfg, "clean")
    out = {k: round(float(s[k]), 4) for k in ("f1", "static_recall", "moving_recall", "fg_ari")}
    if teacher is not None:
        diag = evaluate_teacher(teacher, val, cfg)
        out["teacher_val"] = {k: round(float(v), 4) for k, v in diag.items()}
    return out


def run_seed(args, seed: int) -> dict:
    from diod_ray.config import apply_overrides

    base = apply_overrides(
        load_preset("synthetic"),
        {"distill.ema_half_life_steps": float(args.half_life), "distill.ema": 0.996},
    )
    train = make_clips(base, "train", args.train_clips)
    val = eval_batches(make_clips(base, "val", args.val_clips))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model(base)
    opt = torch.optim.Adam(model.parameters(), lr=base.optim.lr)
    t0 = time.perf_counter()
    for i in range(args.burn_in):
        for g in opt.param_groups:
            g["lr"] = base.optim.lr * min(1.0, (i + 1) / args.warmup)
        step(model, opt, base, train_batch(base, train, rng, args.batch))
    result = {"seed": seed, "burn_in_s": round(time.perf_counter() - t0, 1)}
    result["burn_in"] = measure(model, base, val, build_teacher(model, base))
    state = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()))
    for name, overrides in BRANCHES.items():
        cfg = apply_overrides(base, overrides)
        torch.manual_seed(seed + 1)
        brng = np.random.default_rng(seed + 1)  # every branch sees the same batches
        m = build_model(cfg)
        m.load_state_dict(state[0])
        o = torch.optim.Adam(m.parameters(), lr=cfg.optim.lr)
        o.load_state_dict(state[1])
        teacher = None if name == "control" else build_teacher(m, cfg)
        act, teacher_term = TeacherActivity(), []
        t0 = time.perf_counter()
        for _ in range(args.distill):
            res = step(m, o, cfg, train_batch(cfg, train, brng, args.batch), teacher)
            if teacher is not None:
                act.add_step(res.stats)
                teacher_term.append(float(res.terms["teacher_bce"]))
        r = {"seconds": round(time.perf_counter() - t0, 1)}
        if teacher is not None:
            r["train"] = {k: round(v, 4) for k, v in act.summary().items()}
            r["train"]["teacher_term"] = round(float(np.mean(teacher_term)), 4)
        r.update(measure(m, cfg, val, teacher))
        result[name] = r
        print(json.dumps({name: r}), flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--train-clips", type=int, default=48)
    p.add_argument("--val-clips", type=int, default=24)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--burn-in", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--distill", type=int, default=96)
    p.add_argument("--half-life", type=float, default=12.0, help="teacher EMA half-life, steps")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    runs = [run_seed(args, s) for s in args.seeds]
    print(json.dumps({"args": vars(args), "runs": runs}))


if __name__ == "__main__":
    main()
