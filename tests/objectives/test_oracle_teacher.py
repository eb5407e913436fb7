"""Oracle-teacher test of the distillation plumbing (issue 21), independent of scale.

The teacher's outputs are set from GT: attention one-hot on the attention grid, each GT object on
its own non-background slot and the rest on the background slot; W_fg = 1 on objects, 0
elsewhere. The clips' motion masks cover the moving object only, never the static ones. From the
same initial smoke model and on the same batch:

* control: the burn-in loss (motion masks only) for N steps;
* DIOD: distill_loss (eq. 5) with the oracle teacher for N steps;
* DIOD with the teacher term cut from eq. 5 (``objectives.w_teacher = 0``).

The student's mean W_fg on the static objects must end well above the control's with the teacher
term, and not without it: the pseudo-labels reach the student's gradient through eq. (3) and
nothing else in the objective lifts static objects. Plain PyTorch on the CPU, no Ray; each step is
training/step.py's (forward, loss, zero_grad, backward, clip, Adam step) without autocast/DDP.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diod_ray.config import Config, load_preset
from diod_ray.gate_counts import fg_counts
from diod_ray.inference import batchnorm_batch_statistics
from diod_ray.metrics import downsample_nearest
from diod_ray.model import build_model
from diod_ray.model.diod import ModelOutput
from diod_ray.objectives.burn_in import burn_in_loss
from diod_ray.objectives.distill import distill_loss

STEPS = 25
# a constant rate 6x the smoke preset's (no warm-up): W_fg separates within STEPS steps
LR = 3e-3
STATIC_IDS, MOVING_ID = (1, 2), 3


def oracle_clips(cfg: Config):
    """Two clips of ``data.clip_len`` frames on a noisy plain background: a red and a blue static
    rectangle (GT ids 1, 2) and a green one moving 6 px right per frame (id 3).

    Returns video [B, T, 3, H, W] normalised to [-1, 1], gt int [B, T, H, W], gt_moving bool
    [B, T, 4] (indexed by GT id), motion ids [B, T, H, W] (the moving object only)."""
    d = cfg.data
    T, H, W = d.clip_len, d.height, d.width
    rng = np.random.default_rng(0)
    B = 2
    frames = np.zeros((B, T, H, W, 3), np.float32)
    gt = np.zeros((B, T, H, W), np.int64)
    for b in range(B):
        frames[b] = rng.uniform(0.3, 0.5, 3) + rng.normal(0, 0.03, (T, H, W, 3))
        objects = (  # (id, top, left, height, width, colour); id 3 moves
            (1, 4 + 2 * b, 4 + 8 * b, 12, 14, (0.9, 0.1, 0.1)),
            (2, 18 - 2 * b, 40 - 6 * b, 10, 16, (0.1, 0.2, 0.9)),
            (MOVING_ID, 16 - 4 * b, 22, 12, 12, (0.1, 0.9, 0.2)),
        )
        for t in range(T):
            for oid, y, x, hh, ww, colour in objects:
                x += 6 * t if oid == MOVING_ID else 0
                frames[b, t, y : y + hh, x : x + ww] = colour
                gt[b, t, y : y + hh, x : x + ww] = oid
    video = torch.from_numpy(frames).sub(0.5).div(0.5).permute(0, 1, 4, 2, 3).contiguous()
    gt_t = torch.from_numpy(gt)
    moving = torch.zeros(B, T, MOVING_ID + 1, dtype=torch.bool)
    moving[:, :, MOVING_ID] = True
    motion = torch.where(gt_t == MOVING_ID, gt_t, torch.zeros_like(gt_t))
    return video, gt_t, moving, motion


def oracle_teacher(gt: torch.Tensor, grid_hw: tuple[int, int], k: int, bg: int) -> ModelOutput:
    """Teacher outputs from GT on the attention grid: object i on the i-th non-background slot,
    everything else on the background slot; W_fg = 1 on objects, 0 elsewhere."""
    g = downsample_nearest(gt, grid_hw)  # [B, T, h, w]
    object_slots = [s for s in range(k) if s != bg]
    slot = torch.full_like(g, bg)
    for i, s in enumerate(object_slots, start=1):
        slot = torch.where(g == i, torch.full_like(g, s), slot)
    attn = torch.nn.functional.one_hot(slot, k).permute(0, 1, 4, 2, 3).float()  # [B,T,K,h,w]
    b, t, h, w = g.shape
    return ModelOutput(
        attn=attn,
        fg=(g > 0).float(),
        recon=torch.zeros(b, t, 3, 1, 1),  # unused by the loss
        slots=torch.zeros(b, t, k, 1),
        state=None,
    )


def train(mode: str, w_teacher: float = 1.0):
    """The smoke model from seed 0 after STEPS steps of ``mode`` ("control" or "oracle") on the
    clips. Returns (mean W_fg on static objects, on background, the last step's stats)."""
    cfg = load_preset("smoke")
    cfg.objectives.w_teacher = w_teacher
    video, gt, moving, motion = oracle_clips(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    bg = model.bg_index
    teacher = oracle_teacher(gt, model.grid_hw, cfg.model.num_slots, bg)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    model.train()
    stats: dict[str, float] = {}
    for _ in range(STEPS):
        out = model(video)
        if mode == "control":
            res = burn_in_loss(
                out, motion, video, cfg.objectives, bg, max_objects=cfg.data.max_objects
            )
        else:
            res = distill_loss(
                out,
                teacher,
                motion,
                video,
                cfg.objectives,
                cfg.distill,
                bg,
                max_objects=cfg.data.max_objects,
            )
        opt.zero_grad(set_to_none=True)
        res.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        stats = res.stats
    # W_fg per GT object, BatchNorm on this batch's statistics (running ones after 25 steps are
    # not settled), running statistics left unchanged
    with batchnorm_batch_statistics(model), torch.no_grad():
        fg = model(video).fg
    b, t, h, w = fg.shape
    grid_gt = downsample_nearest(gt, (h, w)).reshape(b * t, h, w)
    s = fg_counts(fg.reshape(b * t, h, w), grid_gt, moving.reshape(b * t, -1)).summary()
    assert s["n_static_objects"] == b * t * len(STATIC_IDS)
    return s["fg_static"], s["fg_background"], stats


@pytest.fixture(scope="module")
def runs(one_torch_thread):
    return {
        "control": train("control"),
        "oracle": train("oracle"),
        "no_teacher_term": train("oracle", w_teacher=0.0),
    }


def test_clips_keep_static_objects_out_of_the_motion_masks():
    cfg = load_preset("smoke")
    _, gt, moving, motion = oracle_clips(cfg)
    for oid in STATIC_IDS:
        assert bool((gt == oid).any()) and not bool((motion[gt == oid] > 0).any())
    assert torch.equal(motion > 0, gt == MOVING_ID) and moving[..., MOVING_ID].all()
    teacher = oracle_teacher(gt, (8, 16), 5, 4)
    assert torch.equal(teacher.attn.sum(2), torch.ones(2, cfg.data.clip_len, 8, 16))
    assert set(teacher.attn.argmax(2).unique().tolist()) == {0, 1, 2, 4}  # 3 objects + background


def test_oracle_pseudo_labels_lift_static_objects_above_the_control(runs):
    (c_static, c_bg, _), (o_static, o_bg, stats) = runs["control"], runs["oracle"]
    # every static and moving object is a kept, matched candidate at every step
    frames = stats["frames"]
    assert stats["candidates_kept"] == stats["teacher_matched"] == 3 * frames
    # motion masks alone push W_fg down everywhere but on the moving object
    assert c_static < 0.2, c_static
    # with the teacher's pseudo-labels the static objects rise well above the control's
    assert o_static - c_static > 0.3, (o_static, c_static)
    assert (o_static - o_bg) - (c_static - c_bg) > 0.15, (o_static, o_bg, c_static, c_bg)


def test_without_the_teacher_term_the_advantage_disappears(runs):
    (c_static, c_bg, _), (o_static, _, _) = runs["control"], runs["oracle"]
    n_static, n_bg, stats = runs["no_teacher_term"]
    assert stats["candidates_kept"] > 0  # the same pseudo-labels, extracted but weighted 0
    assert n_static - c_static < 0.1, (n_static, c_static)
    assert (n_static - c_static) < 0.25 * (o_static - c_static)
    assert abs((n_static - n_bg) - (c_static - c_bg)) < 0.05
