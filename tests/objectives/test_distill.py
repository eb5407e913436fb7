"""Distillation objective (eq. 2-5) on hand-computed cases, its ablation modes, and one real step."""

from __future__ import annotations

import math

import pytest
import torch

from diod_ray.config import Config, load_preset
from diod_ray.model import ModelOutput, ModelState, build_model
from diod_ray.objectives.distill import (
    distill_loss,
    filter_motion_masks,
    global_loss,
    motion_bce_loss,
    teacher_bce_loss,
)
from diod_ray.teacher import build_teacher

S, E = 0.999, 1e-8  # objectives.prob_scale / prob_eps


def q(x: float) -> float:
    return S * x + E


def bce_by_hand(probs, mask, weight) -> float:
    """-(1/P) [ w sum_{i in m} log p_i + sum_{i not in m} log(1 - p_i) ] on squashed probs."""
    pos = sum(math.log(q(p)) for p, m in zip(probs, mask) if m)
    neg = sum(math.log(1 - q(p)) for p, m in zip(probs, mask) if not m)
    return -(weight * pos + neg) / len(probs)


def output(attn: torch.Tensor, bg: int, recon: torch.Tensor) -> ModelOutput:
    b, t, k = attn.shape[:3]
    return ModelOutput(
        attn=attn,
        fg=1.0 - attn[:, :, bg],
        recon=recon,
        slots=torch.zeros(b, t, k, 4),
        state=ModelState(slots=torch.zeros(b, k, 4)),
    )


# grid 2 x 4 (P = 8), K = 3 slots, background slot 2; pixel i = (i // 4, i % 4)
STUDENT = [
    [0.1, 0.2, 0.3, 0.6, 0.2, 0.1, 0.2, 0.35],  # slot 0
    [0.7, 0.6, 0.1, 0.2, 0.1, 0.3, 0.1, 0.2],  # slot 1
]
C1, C2 = [0, 1], [3, 7]  # teacher: slot 0 on C1, slot 1 on C2, background elsewhere


def hand_case(requires_grad: bool = True):
    s = torch.tensor(STUDENT)
    s_attn = torch.cat([s, 1 - s.sum(0, keepdim=True)]).view(1, 1, 3, 2, 4)
    s_attn.requires_grad_(requires_grad)
    t_attn = torch.tensor([[0.015, 0.015, 0.97]]).repeat(8, 1)  # [P, K]
    t_attn[C1] = torch.tensor([0.95, 0.03, 0.02])
    t_attn[C2] = torch.tensor([0.03, 0.95, 0.02])
    t_attn = t_attn.T.reshape(1, 1, 3, 2, 4)
    g = torch.Generator().manual_seed(0)
    recon = torch.rand(1, 1, 3, 8, 16, generator=g, requires_grad=requires_grad)
    target = torch.rand(1, 1, 3, 8, 16, generator=g)
    # motion ids at 8 x 16: object 1 on grid pixels C1 (teacher W_fg 0.98), object 2 on pixels
    # 5, 6 (teacher W_fg 0.03: filtered out)
    grid_ids = torch.zeros(2, 4, dtype=torch.int64)
    grid_ids[0, 0:2] = 1
    grid_ids[1, 1:3] = 2
    motion = torch.kron(grid_ids, torch.ones(4, 4, dtype=torch.int64)).view(1, 1, 8, 16)
    cfg = Config()
    cfg.distill.min_region_pixels = 1
    student = output(s_attn, 2, recon)
    teacher = output(t_attn, 2, torch.zeros_like(recon))
    return student, teacher, motion, target, cfg


def test_filter_motion_masks_and_eq4_by_hand():
    masks = torch.zeros(1, 1, 2, 2, 4)
    masks[0, 0, 0, 0, :2] = 1  # over high W_fg
    masks[0, 0, 1, 1, 1:3] = 1  # over low W_fg
    fg = torch.full((1, 1, 2, 4), 0.2)
    fg[0, 0, 0, 0] = 0.99
    fg[0, 0, 0, 1] = 0.93
    valid = torch.tensor([[[True, True]]])
    kept, scores = filter_motion_masks(masks, valid, fg, p=0.9)
    assert kept.tolist() == [[[True, False]]]
    torch.testing.assert_close(scores, torch.tensor([[[0.96, 0.2]]]))
    # eq. (4) with weight 1 + 0.96 on the kept mask
    probs = [0.8, 0.6, 0.3, 0.1, 0.2, 0.1, 0.05, 0.4]
    m = masks[0, 0, 0].flatten().tolist()
    got = motion_bce_loss(
        torch.tensor(probs).mul(S).add(E).view(1, 1, 8),
        masks[0, 0, :1].view(1, 1, 8),
        scores[0, 0, :1].view(1, 1),
    )
    assert abs(got.item() - bce_by_hand(probs, m, 1.96)) < 1e-5
    # eq. (3) has the same form with the candidate's score
    got_t = teacher_bce_loss(
        torch.tensor(probs).mul(S).add(E).view(1, 1, 8),
        masks[0, 0, :1].view(1, 1, 8),
        torch.tensor([[0.5]]),
    )
    assert abs(got_t.item() - bce_by_hand(probs, m, 1.5)) < 1e-5


@pytest.mark.parametrize(
    "source, score",
    # the teacher's own slot attention on C1 / C2 is 0.95; its W_fg = 1 - 0.02 = 0.98
    [("attention", 0.95), ("foreground", 0.98)],
)
def test_distill_loss_by_hand(source, score):
    student, teacher, motion, target, cfg = hand_case()
    cfg.distill.score_source = source
    res = distill_loss(
        student,
        teacher,
        motion,
        target,
        cfg.objectives,
        cfg.distill,
        2,
        max_objects=cfg.data.max_objects,
    )
    s0, s1 = STUDENT
    mask = lambda idx: [i in idx for i in range(8)]  # noqa: E731
    # matching: C1 -> slot 1, C2 -> slot 0 is the better of the two assignments
    swap = bce_by_hand(s0, mask(C1), 1) + bce_by_hand(s1, mask(C2), 1)
    keep = bce_by_hand(s1, mask(C1), 1) + bce_by_hand(s0, mask(C2), 1)
    assert keep < swap
    w = 1 + score  # eq. (3) weight
    teacher_term = (bce_by_hand(s1, mask(C1), w) + bce_by_hand(s0, mask(C2), w)) / 2
    motion_term = bce_by_hand(s1, mask(C1), 1.98)  # object 1, score = mean W_fg = 0.98
    fg_s = [a + b for a, b in zip(s0, s1)]  # W_fg = 1 - attn of the background slot
    nll = -sum(math.log(q(f)) for i, f in enumerate(fg_s) if i in C1) / 8  # m'_fg = object 1 only
    reg = sum(q(f) for f in fg_s) / 8
    mse = torch.mean((student.recon.detach() - target) ** 2).item()
    expected = motion_term + teacher_term + nll + 0.3 * reg + mse
    assert abs(res.total.item() - expected) < 1e-5
    assert abs(res.terms["teacher_bce"].item() - teacher_term) < 1e-5
    assert abs(res.terms["motion_bce"].item() - motion_term) < 1e-5
    assert abs(res.terms["fg_nll"].item() - nll) < 1e-6
    assert abs(res.terms["fg_reg"].item() - reg) < 1e-6
    st = res.stats
    assert st["candidates_kept"] == 2 and st["candidates_dropped"] == 0
    assert st["candidates_kept_area"] == pytest.approx(4 / 8)  # C1 and C2: 2 of 8 pixels each
    assert st["motion_total"] == 2 and st["motion_kept_share"] == 0.5
    # student argmax: slot 1 on {0, 1} (IoU 1 with C1), slot 0 on {3} only (IoU 1/2 with C2)
    assert abs(st["teacher_student_agreement"] - 0.75) < 1e-6
    # eq. (5): the total is the sum of its (weighted) terms
    t = res.terms
    total = t["motion_bce"] + t["teacher_bce"] + t["fg_nll"] + 0.3 * t["fg_reg"] + t["recon"]
    torch.testing.assert_close(res.total.detach(), total)


def test_gradients_reach_the_student_only():
    student, teacher, motion, target, cfg = hand_case()
    teacher.attn.requires_grad_(True)
    res = distill_loss(
        student,
        teacher,
        motion,
        target,
        cfg.objectives,
        cfg.distill,
        2,
        max_objects=cfg.data.max_objects,
    )
    res.total.backward()
    assert student.attn.grad is not None and student.attn.grad.abs().sum() > 0
    assert student.recon.grad is not None
    assert teacher.attn.grad is None


def test_without_motion_masks_uses_teacher_union():
    student, teacher, motion, target, cfg = hand_case()
    cfg.distill.use_motion_masks = False
    res = distill_loss(
        student,
        teacher,
        motion,
        target,
        cfg.objectives,
        cfg.distill,
        2,
        max_objects=cfg.data.max_objects,
    )
    fg_s = [a + b for a, b in zip(*STUDENT)]
    nll = -sum(math.log(q(f)) for i, f in enumerate(fg_s) if i in C1 + C2) / 8
    assert abs(res.terms["fg_nll"].item() - nll) < 1e-6
    assert res.terms["motion_bce"].item() == 0.0
    assert res.stats["motion_total"] == 0
    *case, c = hand_case()
    with_motion = distill_loss(*case, c.objectives, c.distill, 2, max_objects=c.data.max_objects)
    t = res.terms
    assert (
        abs(
            res.total.item()
            - (t["teacher_bce"] + t["fg_nll"] + 0.3 * t["fg_reg"] + t["recon"]).item()
        )
        < 1e-6
    )
    assert res.total.item() != with_motion.total.item()


def test_one_to_one_connection_merges_a_slots_regions():
    student, teacher, motion, target, cfg = hand_case()
    # teacher slot 0 on both C1 and C2: two separated regions of one slot
    attn = teacher.attn.clone().view(3, 8)
    attn[:, C2] = torch.tensor([0.95, 0.03, 0.02]).view(3, 1)
    teacher = output(attn.view(1, 1, 3, 2, 4), 2, teacher.recon)
    many = distill_loss(
        student,
        teacher,
        motion,
        target,
        cfg.objectives,
        cfg.distill,
        2,
        max_objects=cfg.data.max_objects,
    )
    cfg.distill.connection = "one_to_one"
    one = distill_loss(
        student,
        teacher,
        motion,
        target,
        cfg.objectives,
        cfg.distill,
        2,
        max_objects=cfg.data.max_objects,
    )
    assert many.stats["candidates_kept"] == 2 and one.stats["candidates_kept"] == 1
    assert many.terms["teacher_bce"].item() != one.terms["teacher_bce"].item()


def test_global_loss_sum_and_per_frame_normalisation():
    cfg = Config()
    cfg.objectives.normalisation = "paper"
    cfg.objectives.w_motion, cfg.objectives.w_teacher, cfg.objectives.w_recon = 2.0, 3.0, 0.5
    # 1 clip, 2 frames: frame 0 has motion objects 1.0 and 3.0, frame 1 none
    motion = torch.tensor([[[1.0, 3.0], [7.0, 9.0]]])
    m_used = torch.tensor([[[True, True], [False, False]]])
    # teacher: frame 0 one object 4.0, frame 1 objects 2.0, 6.0
    teacher = torch.tensor([[[4.0, 5.0], [2.0, 6.0]]])
    t_used = torch.tensor([[[True, False], [True, True]]])
    fg_bg, mse = torch.tensor(0.25), torch.tensor(0.1)
    total, m, t = global_loss(motion, m_used, teacher, t_used, fg_bg, mse, cfg.objectives)
    assert m.item() == 2.0  # mean over frame 0's objects; frame 1 has none and is not counted
    assert t.item() == 4.0  # (4 + (2 + 6) / 2) / 2
    assert abs(total.item() - (2 * 2.0 + 3 * 4.0 + 0.25 + 0.5 * 0.1)) < 1e-6
    cfg.objectives.normalisation = "reference"  # sum over frames / B
    _, m, t = global_loss(motion, m_used, teacher, t_used, fg_bg, mse, cfg.objectives)
    assert m.item() == 2.0 and t.item() == 8.0


def test_one_real_distillation_step():
    """Real model, EMA teacher on the weak view, distill_loss, backward, step, EMA update."""
    cfg = load_preset("smoke")
    torch.manual_seed(0)
    model = build_model(cfg)
    teacher = build_teacher(model, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    b, t, h, w = 2, cfg.data.clip_len, cfg.data.height, cfg.data.width
    g = torch.Generator().manual_seed(1)
    weak = torch.rand(b, t, 3, h, w, generator=g) * 2 - 1
    strong = (weak * 0.8).clamp(-1, 1)
    motion = torch.zeros(b, t, h, w, dtype=torch.int64)
    motion[:, :, 4:16, 8:28] = 1
    motion[:, :, 18:30, 36:60] = 2
    cfg.distill.p = 0.0  # an untrained teacher is not confident: keep everything
    with torch.no_grad():
        t_out = teacher(weak)
    assert not t_out.attn.requires_grad
    out = model(strong)
    res = distill_loss(
        out,
        t_out,
        motion,
        strong,
        cfg.objectives,
        cfg.distill,
        model.bg_index,
        max_objects=cfg.data.max_objects,
    )
    assert torch.isfinite(res.total)
    assert res.stats["candidates_kept"] > 0 and res.stats["motion_kept_share"] == 1.0
    assert all(math.isfinite(v) for v in res.stats.values())
    before = {k: p.clone() for k, p in teacher.model.named_parameters()}
    opt.zero_grad()
    res.total.backward()
    opt.step()
    teacher.update(model)
    s = dict(model.named_parameters())
    for k, p in teacher.model.named_parameters():
        assert p.grad is None
        torch.testing.assert_close(p, teacher.ema * before[k] + (1 - teacher.ema) * s[k].detach())
