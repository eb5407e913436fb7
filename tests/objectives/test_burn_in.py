"""Burn-in losses against hand-computed values on small hand-built masks."""

from __future__ import annotations

import math

import pytest
import torch

from diod_ray.config import Config
from diod_ray.model.diod import ModelOutput, ModelState
from diod_ray.objectives.bce import normalise_objects, object_size_weight, weighted_bce
from diod_ray.objectives.burn_in import burn_in_loss, fg_bg_loss, reconstruction_loss

SCALE, EPS = 0.999, 1e-8


def test_weighted_bce_hand_values():
    p = torch.tensor([[[0.8, 0.1, 0.5, 0.5]]])
    y = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    w = object_size_weight(y)  # 2 - 2/4
    assert torch.allclose(w, torch.tensor([[1.5]]))
    got = weighted_bce(p, y, w)
    ref = -(1.5 * math.log(0.8) + math.log(0.9) + 1.5 * math.log(0.5) + math.log(0.5)) / 4
    assert torch.allclose(got, torch.tensor([[ref]]), atol=1e-6)
    assert torch.equal(object_size_weight(y, "none"), torch.ones(1, 1))


def test_normalise_objects_modes():
    per = torch.tensor([[[1.0, 3.0, 100.0], [5.0, 7.0, 9.0]], [[2.0, 0.0, 0.0], [4.0, 4.0, 4.0]]])
    valid = torch.tensor(
        [[[True, True, False], [False, False, False]], [[True, False, False], [True, True, True]]]
    )
    # frame means: 2, (none), 2, 4
    assert torch.isclose(normalise_objects(per, valid, "paper"), torch.tensor(8.0 / 3))
    assert torch.isclose(normalise_objects(per, valid, "reference"), torch.tensor(8.0 / 2))
    per_nan = per.clone()
    per_nan[0, 0, 2] = float("nan")  # a padded object's value never leaks in
    assert torch.isclose(normalise_objects(per_nan, valid, "paper"), torch.tensor(8.0 / 3))
    none = normalise_objects(per, torch.zeros_like(valid), "paper")
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="normalisation"):
        normalise_objects(per, valid, "sum")


def test_fg_bg_loss_hand_values_and_alpha_on_whole_map():
    fg = torch.tensor([[0.9, 0.2], [0.5, 0.1]])
    m = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    out = fg_bg_loss(fg, m, alpha=0.3)
    w = fg * SCALE + EPS
    nll = -(math.log(w[0, 0]) + math.log(w[1, 0])) / 4
    reg = float(w.mean())
    assert math.isclose(out.nll.item(), nll, rel_tol=1e-5)
    assert math.isclose(out.reg.item(), reg, rel_tol=1e-5)
    assert math.isclose(out.total.item(), nll + 0.3 * reg, rel_tol=1e-5)
    # alpha acts on the WHOLE map: the gradient inside the motion mask includes +alpha/N
    fg_req = fg.clone().requires_grad_(True)
    fg_bg_loss(fg_req, m, alpha=0.3).total.backward()
    expected = -(m * SCALE / w) / 4 + 0.3 * SCALE / 4
    assert torch.allclose(fg_req.grad, expected, atol=1e-5)


def test_reconstruction_loss():
    a, b = torch.zeros(1, 1, 3, 2, 2), torch.full((1, 1, 3, 2, 2), 2.0)
    assert reconstruction_loss(a, b).item() == 4.0


# ---------------------------------------------------------------------------------------------
# burn_in_loss on hand-built outputs: 1 clip, 2 frames, K = 4 slots (slot 3 = background)
# ---------------------------------------------------------------------------------------------

H = W = 8
h = w = 2


def _ids() -> torch.Tensor:
    ids = torch.zeros(1, 2, H, W, dtype=torch.long)
    ids[0, 0, :4, :4] = 3  # frame 0: objects at grid cells (0,0) and (1,1)
    ids[0, 0, 4:, 4:] = 8
    ids[0, 1, :4, 4:] = 2  # frame 1: one object at grid cell (0,1)
    return ids


def _perfect_attn() -> torch.Tensor:
    """Slot 0 and 1 hold frame 0's objects, slot 2 frame 1's object, slot 3 the rest."""
    attn = torch.zeros(1, 2, 4, h, w)
    attn[0, 0, 0, 0, 0] = 1
    attn[0, 0, 1, 1, 1] = 1
    attn[0, 0, 3, 0, 1] = attn[0, 0, 3, 1, 0] = 1
    attn[0, 1, 2, 0, 1] = 1
    attn[0, 1, 3] = 1 - attn[0, 1, 2]
    return attn


def _output(attn: torch.Tensor, recon: torch.Tensor | None = None) -> ModelOutput:
    B, T, K = attn.shape[:3]
    return ModelOutput(
        attn=attn,
        fg=1 - attn[:, :, -1],
        recon=torch.zeros(B, T, 3, H, W) if recon is None else recon,
        slots=torch.zeros(B, T, K, 5),
        state=ModelState(slots=torch.zeros(B, K, 5), hidden=[]),
    )


def _cfg(max_objects: int = 4, normalisation: str = "paper") -> Config:
    cfg = Config()
    cfg.data.max_objects = max_objects
    cfg.objectives.normalisation = normalisation
    return cfg


def _burn_in(out, ids, target, cfg: Config):
    """burn_in_loss with the background slot 3 and the sections of ``cfg`` it reads."""
    return burn_in_loss(out, ids, target, cfg.objectives, 3, max_objects=cfg.data.max_objects)


def _perfect_bce_per_object(size: int) -> float:
    """Pixel-mean weighted BCE when the slot equals the mask (p = 0.999 y + 1e-8)."""
    weight = 2 - size / (h * w)
    pos = -weight * math.log(SCALE + EPS) * size
    neg = -math.log(1 - EPS) * (h * w - size)
    return (pos + neg) / (h * w)


def test_burn_in_perfect_match_hand_value():
    target = torch.zeros(1, 2, 3, H, W)
    res = _burn_in(_output(_perfect_attn()), _ids(), target, _cfg())
    per_obj = _perfect_bce_per_object(1)
    assert math.isclose(res.terms["motion_bce"].item(), per_obj, rel_tol=1e-4)
    assert res.stats["objects_matched"] == 3.0
    # W_fg = 1 exactly on the motion pixels: nll = -log(0.999 + 1e-8) * 3 pixels / 8
    assert math.isclose(res.terms["fg_nll"].item(), -math.log(SCALE + EPS) * 3 / 8, rel_tol=1e-4)
    assert math.isclose(res.terms["fg_reg"].item(), (3 * SCALE + 8 * EPS) / 8, rel_tol=1e-5)
    assert res.terms["recon"].item() == 0.0
    expected = per_obj + res.terms["fg_nll"].item() + 0.3 * res.terms["fg_reg"].item()
    assert math.isclose(res.total.item(), expected, rel_tol=1e-5)


def test_burn_in_perfect_match_is_minimum_and_swap_is_undone():
    ids, target = _ids(), torch.zeros(1, 2, 3, H, W)
    perfect = _burn_in(_output(_perfect_attn()), ids, target, _cfg())
    swapped_attn = _perfect_attn()[:, :, [1, 2, 0, 3]]  # permute the foreground slots
    swapped = _burn_in(_output(swapped_attn), ids, target, _cfg())
    assert torch.allclose(swapped.total, perfect.total, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # any blur of the perfect attention is worse
        noisy = _perfect_attn() + 0.3 * torch.rand(1, 2, 4, h, w, generator=g)
        noisy = noisy / noisy.sum(dim=2, keepdim=True)
        res = _burn_in(_output(noisy), ids, target, _cfg())
        assert res.terms["motion_bce"] > perfect.terms["motion_bce"]


def test_burn_in_padding_and_normalisation_modes():
    ids, target = _ids(), torch.zeros(1, 2, 3, H, W)
    g = torch.Generator().manual_seed(3)
    attn = torch.softmax(torch.randn(1, 2, 4, h, w, generator=g), dim=2)
    small = _burn_in(_output(attn), ids, target, _cfg(max_objects=2))
    large = _burn_in(_output(attn), ids, target, _cfg(max_objects=16))
    assert torch.equal(small.total, large.total)
    # reference normalisation = sum of the two frame means / B (= 1) vs. their mean (paper)
    ref = _burn_in(_output(attn), ids, target, _cfg(normalisation="reference"))
    assert math.isclose(
        ref.terms["motion_bce"].item(), 2 * small.terms["motion_bce"].item(), rel_tol=1e-5
    )


def test_burn_in_empty_frames_and_gradients():
    ids = torch.zeros(1, 2, H, W, dtype=torch.long)  # no motion at all
    logits = torch.randn(1, 2, 4, h, w, requires_grad=True)
    attn = torch.softmax(logits, dim=2)
    recon = torch.randn(1, 2, 3, H, W, requires_grad=True)
    res = _burn_in(_output(attn, recon), ids, torch.zeros(1, 2, 3, H, W), _cfg())
    assert res.terms["motion_bce"].item() == 0.0 and res.terms["fg_nll"].item() == 0.0
    res.total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    assert recon.grad.abs().sum() > 0
