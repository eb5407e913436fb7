"""ids_to_masks and the batched Hungarian matching against hand-built cases and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diod_ray.objectives.masks import ids_to_masks
from diod_ray.objectives.matching import likelihood_scores, match_slots


def test_ids_to_masks_hand_built():
    ids = torch.zeros(1, 2, 4, 4, dtype=torch.int64)
    ids[0, 0, :2, :2] = 9  # frame 0: ids 9 and 5 -> channels 1 and 0 (increasing id order)
    ids[0, 0, 2:, 2:] = 5
    ids[0, 1, 1:3, 1:3] = 7  # frame 1: one object
    masks, valid = ids_to_masks(ids, (4, 4), max_objects=3)
    assert masks.shape == (1, 2, 3, 4, 4) and masks.dtype == torch.float32
    assert valid.tolist() == [[[True, True, False], [True, False, False]]]
    assert torch.equal(masks[0, 0, 0], (ids[0, 0] == 5).float())
    assert torch.equal(masks[0, 0, 1], (ids[0, 0] == 9).float())
    assert torch.equal(masks[0, 1, 0], (ids[0, 1] == 7).float())
    assert masks[0, 0, 2].sum() == 0 and masks[0, 1, 1:].sum() == 0


def test_ids_to_masks_nearest_matches_interpolate_and_cuts():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (2, 3, 13, 22), generator=g)
    ids[1, 2] = 0  # an empty frame
    ids[0, 0, 0, 0] = 1000  # a large id
    h, w = 4, 6
    masks, valid = ids_to_masks(ids, (h, w), max_objects=3)
    small = F.interpolate(ids.flatten(0, 1)[:, None].float(), size=(h, w), mode="nearest")
    small = small.long().reshape(2, 3, h, w)
    for b, t in itertools.product(range(2), range(3)):
        present = [int(i) for i in torch.unique(small[b, t]) if i != 0]
        assert int(valid[b, t].sum()) == min(len(present), 3)
        for o, i in enumerate(present[:3]):
            assert torch.equal(masks[b, t, o], (small[b, t] == i).float())
        assert masks[b, t, len(present[:3]) :].sum() == 0
    assert not valid[1, 2].any()
    # channels are disjoint
    assert masks.sum(dim=2).max() <= 1


def test_ids_to_masks_rejects_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        ids_to_masks(torch.full((1, 1, 4, 4), -1), (2, 2), 2)
    with pytest.raises(ValueError, match="integer"):
        ids_to_masks(torch.zeros(1, 1, 4, 4), (2, 2), 2)
    with pytest.raises(ValueError, match=r"\[B,T,H,W\]"):
        ids_to_masks(torch.zeros(1, 4, 4, dtype=torch.long), (2, 2), 2)


def test_likelihood_scores_formula():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(2, 3, 10, generator=g) * 0.98 + 0.01
    y = (torch.rand(2, 4, 10, generator=g) > 0.5).float()
    s = likelihood_scores(p, y)
    for n, si, o in itertools.product(range(2), range(3), range(4)):
        ref = (y[n, o] * p[n, si].log() + (1 - y[n, o]) * (1 - p[n, si]).log()).sum()
        assert torch.allclose(s[n, si, o], ref, atol=1e-4)


def brute_force(score: np.ndarray, cols: list[int]) -> dict[int, int]:
    """Best injective object -> slot map by enumerating every slot permutation."""
    S = score.shape[0]
    best, best_map = -np.inf, {}
    for perm in itertools.permutations(range(S), len(cols)):
        total = sum(score[s, o] for s, o in zip(perm, cols))
        if total > best:
            best, best_map = total, dict(zip(cols, perm))
    return best_map


@pytest.mark.parametrize("seed", range(6))
def test_match_slots_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    N, S, n_o, P = 5, 5, 4, 24
    probs = torch.softmax(torch.randn(N, S, P, generator=g) * 3, dim=1) * 0.999 + 1e-8
    targets = (torch.rand(N, n_o, P, generator=g) > 0.6).float()
    valid = torch.rand(N, n_o, generator=g) > 0.3
    valid[0] = False  # a frame without objects
    match = match_slots(probs, targets, valid)
    assert match.dtype == torch.long and match.shape == (N, n_o)
    score = likelihood_scores(probs, targets).numpy()
    for n in range(N):
        cols = [o for o in range(n_o) if valid[n, o]]
        expected = brute_force(score[n], cols)
        for o in range(n_o):
            assert int(match[n, o]) == expected.get(o, -1)


def test_match_slots_padding_does_not_change_valid_matches():
    g = torch.Generator().manual_seed(7)
    N, S, P = 3, 6, 30
    probs = torch.softmax(torch.randn(N, S, P, generator=g) * 3, dim=1)
    targets = (torch.rand(N, 2, P, generator=g) > 0.5).float()
    valid = torch.ones(N, 2, dtype=torch.bool)
    base = match_slots(probs, targets, valid)
    # padded empty (and even non-empty) invalid columns must not take part
    padded_t = torch.cat([targets, torch.zeros(N, 3, P), (torch.rand(N, 1, P) > 0.5).float()], 1)
    padded_v = torch.cat([valid, torch.zeros(N, 4, dtype=torch.bool)], 1)
    padded = match_slots(probs, padded_t, padded_v)
    assert torch.equal(padded[:, :2], base)
    assert (padded[:, 2:] == -1).all()


def test_match_slots_more_objects_than_slots_and_no_grad():
    probs = torch.full((1, 2, 8), 0.5, requires_grad=True)
    targets = torch.eye(8)[:3].unsqueeze(0)  # 3 objects, 2 slots
    m = match_slots(probs, targets, torch.ones(1, 3, dtype=torch.bool))
    assert (m >= 0).sum() == 2 and (m == -1).sum() == 1
    assert sorted(m[m >= 0].tolist()) == [0, 1]


def test_ids_to_masks_large_ids_take_the_sort_path_with_same_result():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 4, (2, 2, 8, 12), generator=g)
    big = torch.where(ids > 0, ids * (1 << 28) + 7, ids)  # same order, ids far beyond the limit
    m1, v1 = ids_to_masks(ids, (4, 6), max_objects=2)
    m2, v2 = ids_to_masks(big, (4, 6), max_objects=2)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)


def test_match_slots_exclude_slot_equals_removing_it():
    g = torch.Generator().manual_seed(11)
    N, S, P = 4, 6, 40
    probs = torch.softmax(torch.randn(N, S, P, generator=g) * 3, dim=1) * 0.999 + 1e-8
    targets = (torch.rand(N, 3, P, generator=g) > 0.5).float()
    valid = torch.rand(N, 3, generator=g) > 0.2
    for bg in (0, 2, S - 1):
        keep = [s for s in range(S) if s != bg]
        sub = match_slots(probs[:, keep], targets, valid)
        mapped = torch.where(sub >= 0, torch.tensor(keep)[sub.clamp(min=0)], sub)
        got = match_slots(probs, targets, valid, exclude_slot=bg)
        assert torch.equal(got, mapped)
        assert not (got == bg).any()
