"""The teacher is active and its activity is visible (docs/teacher.md): scoring options on hand-built
maps, GT-based diagnostics, the no-candidate guard, a short burn-in after which distillation keeps
candidates, and the run's final JSON line / kept burn-in checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from diod_ray.config import Config, DistillConfig, load_preset
from diod_ray.objectives.distill import filter_motion_masks
from diod_ray.objectives.pseudo_labels import extract_candidates
from diod_ray.teacher import half_life, keep_rate
from diod_ray.teacher_diagnostics import TeacherActivity, candidate_gt_counts, evaluate_teacher

K, BG, H, W = 4, 3, 8, 12  # 4 slots, background slot 3, an 8 x 12 grid


def hand_maps():
    """Two candidates, A of slot 0 and B of slot 1, each with own attention 0.6; the background
    slot holds 0.05 on A and 0.15 on B, so W_fg = 1 - attn_bg is 0.95 on A and 0.85 on B.

    Returns attn [1, K, H, W] (softmax-like: sums to 1), fg [1, H, W], label [1, H, W]."""
    label = torch.full((1, H, W), BG)
    label[0, 1:4, 1:5] = 0  # candidate A: 12 pixels
    label[0, 5:8, 6:11] = 1  # candidate B: 15 pixels
    attn = torch.zeros(1, K, H, W)
    attn[:, BG] = 0.7  # background elsewhere
    attn[:, :BG] = 0.1
    for slot, other, bg in ((0, 1, 0.05), (1, 0, 0.15)):
        on = label[0] == slot
        attn[0, slot][on] = 0.6
        attn[0, BG][on] = bg
        attn[0, other][on] = 0.1
        attn[0, 2][on] = 0.3 - bg  # the rest on the unused slot 2
    torch.testing.assert_close(attn.sum(1), torch.ones(1, H, W))
    assert torch.equal(attn.argmax(1), label)
    return attn, 1.0 - attn[:, BG], label


def cfg_with(**distill) -> DistillConfig:
    c = DistillConfig()
    c.min_region_pixels = 2
    for k, v in distill.items():
        setattr(c, k, v)
    return c


def test_scoring_options_on_hand_built_maps():
    attn, fg, _ = hand_maps()
    # default: the teacher's mean W_fg (the authors' code): A 0.95 > p, B 0.85 < p
    fore = extract_candidates(attn, fg, cfg_with(), BG)
    assert Config().distill.score_source == "foreground"
    assert fore.n_kept == 1 and fore.n_dropped == 1
    torch.testing.assert_close(fore.scores[0, :2], torch.tensor([0.95, 0.85]))
    assert fore.masks[0, 0, 1:4, 1:5].all()  # the kept one (first) is A
    # "attention": each candidate's own slot share, 0.6 for both: nothing passes p = 0.9
    att = extract_candidates(attn, fg, cfg_with(score_source="attention"), BG)
    assert att.n_kept == 0 and att.n_dropped == 2
    torch.testing.assert_close(att.scores[0, :2], torch.tensor([0.6, 0.6]))
    att_low = extract_candidates(attn, fg, cfg_with(score_source="attention", p=0.5), BG)
    assert att_low.n_kept == 2
    # motion masks are scored on W_fg whatever the candidate source: A's box kept, B's dropped
    masks = torch.zeros(1, 1, 2, H, W)
    masks[0, 0, 0, 1:4, 1:5] = 1
    masks[0, 0, 1, 5:8, 6:11] = 1
    kept, scores = filter_motion_masks(masks, torch.ones(1, 1, 2, dtype=torch.bool), fg[None], 0.9)
    assert kept.tolist() == [[[True, False]]]
    torch.testing.assert_close(scores, torch.tensor([[[0.95, 0.85]]]))


def test_gt_counts_precision_and_static_cover():
    attn, fg, _ = hand_maps()
    cands = extract_candidates(attn, fg, cfg_with(p=0.8), BG)  # both A and B kept
    assert cands.n_kept == 2
    gt = torch.zeros(1, H, W, dtype=torch.int64)
    gt[0, 1:4, 1:5] = 7  # static object exactly on A (IoU 1)
    gt[0, 0:2, 8:12] = 9  # moving object that no candidate covers
    gt[0, 7, 0:2] = 4  # static object, not covered (B lies elsewhere)
    moving = torch.zeros(1, 10, dtype=torch.bool)
    moving[0, 9] = True
    counts = candidate_gt_counts(cands, gt, moving)
    assert (counts.gt_kept, counts.kept_hit) == (2, 1)  # B is on background: a false positive
    assert (counts.static_gt, counts.static_covered) == (2, 1)
    assert (counts.moving_gt, counts.moving_covered) == (1, 0)
    s = counts.summary()
    assert s["precision"] == 0.5 and s["static_cover"] == 0.5 and s["moving_cover"] == 0.0
    assert cands.kept_area_sum() == pytest.approx((12 + 15) / (H * W))  # A 12 px, B 15 px
    one = extract_candidates(attn, fg, cfg_with(), BG)  # p = 0.9: only A is kept
    assert one.kept_area_sum() == pytest.approx(12 / (H * W))
    # a candidate overlapping a GT object at IoU exactly 0.5 is not a hit (F1@50's rule)
    half = torch.zeros(1, H, W, dtype=torch.int64)
    half[0, 1:4, 1:5] = 3
    half[0, 1:4, 5:9] = 3  # object twice A's size, A inside it: IoU 12 / 24
    assert candidate_gt_counts(cands, half).kept_hit == 0


def test_activity_sums_steps_and_rates():
    a = TeacherActivity()
    a.add_step(
        {
            "frames": 4,
            "candidates_kept": 6,
            "frames_with_kept_share": 0.5,
            "candidates_kept_area": 0.3,
        }
    )
    a.add_step(
        {
            "frames": 4,
            "candidates_kept": 2,
            "frames_with_kept_share": 0.25,
            "candidates_kept_area": 0.5,
        }
    )
    a.add_step({"frames": 2, "motion_total": 4, "motion_kept": 3})
    s = a.summary()
    assert s["kept_per_frame"] == 0.8 and s["frames_with_kept"] == 0.3
    assert s["kept_area"] == pytest.approx(0.1)  # (0.3 + 0.5) / 8 kept candidates
    assert s["motion_kept_share"] == 0.75 and "precision" not in s  # no GT seen
    assert math.isnan(TeacherActivity().summary()["kept_per_frame"])
    assert TeacherActivity.from_tensor(a.to_tensor()) == a
    assert a.all_reduce() == a  # not distributed: unchanged


def test_ema_half_life_precedence_and_validation():
    c = Config()
    assert keep_rate(c) == 0.996 and abs(half_life(0.996) - 172.94) < 0.01
    c.distill.ema_half_life_steps = 16
    assert abs(keep_rate(c) ** 16 - 0.5) < 1e-12  # the half-life wins over the default ema
    c.distill.ema = 0.99
    with pytest.raises(ValueError, match="ema_half_life_steps.*both set"):
        keep_rate(c)
    c.distill.ema_half_life_steps = 0
    assert keep_rate(c) == 0.99
    c.distill.ema_half_life_steps = -1
    with pytest.raises(ValueError, match="distill.ema_half_life_steps must be >= 0"):
        keep_rate(c)
    # the default preset's distillation spans the teacher half-lives it needs (12 x 32 steps)
    from diod_ray.teacher import MIN_HALF_LIVES

    syn = load_preset("synthetic")
    assert syn.schedule.distill_epochs * 32 / half_life(keep_rate(syn)) >= MIN_HALF_LIVES


def test_epoch_guard_warns_once_when_nothing_is_kept(capsys):
    from diod_ray.training.loop import epoch_teacher_summary
    from diod_ray.training.state import TrainState

    ts = TrainState(load_preset("smoke"), torch.device("cpu"))
    idle = TeacherActivity()
    idle.add_step({"frames": 6, "candidates_kept": 0, "motion_total": 2, "motion_kept": 1})
    out = epoch_teacher_summary(ts, idle, epoch=3, rank=0)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "warning" in ln]
    assert len(lines) == 1 and "epoch 3 kept no teacher candidate in 6 frames" in lines[0]
    assert out["teacher/epochs_without_candidates"] == 1 and out["teacher/kept_per_frame"] == 0
    ts.metrics.update(out)
    busy = TeacherActivity()
    busy.add_step({"frames": 6, "candidates_kept": 3, "frames_with_kept_share": 0.5})
    out = epoch_teacher_summary(ts, busy, epoch=4, rank=0)
    assert "warning" not in capsys.readouterr().out
    assert out["teacher/kept_per_frame"] == 0.5 and out["teacher/frames_with_kept"] == 0.5
    assert out["teacher/epochs_without_candidates"] == 1  # still counts the idle epoch
    assert out["teacher/min_kept_per_frame"] == 0.0
    epoch_teacher_summary(ts, idle, epoch=5, rank=1)  # only rank 0 prints
    assert "warning" not in capsys.readouterr().out


MOVING_CLIPS = (2, 5, 6, 7)  # smoke clips whose flow finds motion in (almost) every frame


def test_after_a_short_burn_in_distillation_keeps_candidates(one_torch_thread):
    """A real burn-in of the smoke model on generated clips with their optical-flow motion masks,
    then distillation steps with the default teacher: candidates are kept, the teacher term of
    eq. (5) is non-zero, and the evaluation-pass diagnostics see the same teacher."""
    from diod_ray.data.motion import motion_masks
    from diod_ray.data.synthetic.render import generate_video
    from diod_ray.model import build_model
    from diod_ray.objectives.burn_in import burn_in_loss
    from diod_ray.objectives.distill import distill_loss
    from diod_ray.teacher import build_teacher

    cfg = load_preset("smoke")
    d = cfg.data
    clips = [generate_video(d.synthetic, d.height, d.width, "train", i) for i in MOVING_CLIPS]
    ids = [motion_masks(c.frames, d.flow, d.min_mask_pixels) for c in clips]
    frames = np.stack([c.frames for c in clips])  # uint8 [B, T, H, W, 3]
    video = torch.from_numpy(frames).float().div(255).sub(0.5).div(0.5).permute(0, 1, 4, 2, 3)
    video = video.contiguous()  # [B, T, 3, H, W]
    motion = torch.from_numpy(np.stack(ids)).long()  # [B, T, H, W]
    assert int(motion.amax()) >= 1

    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(40):  # burn-in
        res = burn_in_loss(
            model(video),
            motion,
            video,
            cfg.objectives,
            model.bg_index,
            max_objects=cfg.data.max_objects,
        )
        opt.zero_grad()
        res.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    teacher = build_teacher(model, cfg)
    kept, terms = [], []
    for _ in range(2):  # distillation steps, as the training loop runs them
        res = distill_loss(
            model(video),
            teacher(video),
            motion,
            video,
            cfg.objectives,
            cfg.distill,
            model.bg_index,
            max_objects=cfg.data.max_objects,
        )
        opt.zero_grad()
        res.total.backward()
        opt.step()
        teacher.update(model)
        kept.append(res.stats["candidates_kept"])
        terms.append(float(res.terms["teacher_bce"]))
    assert min(kept) > 0, kept
    assert min(terms) > 0, terms
    gt = torch.from_numpy(np.stack([c.gt for c in clips])).long()
    moving = torch.zeros(len(clips), d.clip_len, 8, dtype=torch.bool)
    for b, c in enumerate(clips):
        moving[b, :, : c.moving.shape[1]] = torch.from_numpy(c.moving)
    batch = {"frames": video, "gt": gt, "gt_moving": moving, "motion": motion}
    diag = evaluate_teacher(teacher, [batch], cfg)
    assert diag["kept_per_frame"] > 0 and diag["n_frames"] == len(clips) * d.clip_len
    assert 0 <= diag["precision"] <= 1 and 0 <= diag["static_cover"] <= 1
    assert teacher.model.training is False  # the pass restored the teacher's mode


@pytest.mark.slow  # a whole Ray Train run (local mode, Ray Data): ~1 min on a quiet 2-core box
def test_run_reports_teacher_and_keeps_burn_in(smoke_run):
    """The default job's plumbing on the smoke preset: the end-of-burn-in checkpoint survives
    num_to_keep, and the final JSON line carries the teacher object."""
    from diod_ray.checkpoint import load_state

    cfg, summary = smoke_run.cfg, smoke_run.summary  # the session's run (tests/conftest.py)
    assert cfg.run.num_to_keep == 1
    json.dumps(summary, allow_nan=False)  # strict JSON: NaN written as null
    kept = load_state(summary["burn_in_checkpoint"])
    assert Path(summary["burn_in_checkpoint"]).name == "burn_in_end"
    assert kept["step"] == cfg.schedule.burn_in_epochs * cfg.schedule.steps_per_epoch
    assert kept["teacher"] is None and kept["phase"] == "burn_in"
    t = summary["teacher"]
    assert t["score_source"] == "foreground" and t["ema_keep_rate"] == 0.5
    assert {"kept_per_frame", "frames_with_kept", "motion_kept_share"} <= set(t)
    assert t["epochs_without_candidates"] in (0.0, 1.0)
    for phase in ("burn_in", "final"):
        assert {"kept_per_frame", "precision", "static_cover", "kept_area"} <= set(t[phase]), phase
