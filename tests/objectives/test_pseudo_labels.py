"""Teacher object candidates (§3.3.2) and eq. (2) scores on hand-built teacher maps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from diod_ray.config import DistillConfig
from diod_ray.objectives.pseudo_labels import candidate_score, extract_candidates

K, BG, H, W = 5, 4, 12, 20


def teacher_maps(
    label: np.ndarray, value: np.ndarray, bg_value: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """attn [N, K, h, w] whose argmax is ``label`` with attention ``value`` on the argmax slot;
    the background slot gets ``bg_value`` where it is not the argmax (default: the even share);
    the rest is spread evenly over the other slots. fg = 1 - attn[bg]."""
    label = torch.as_tensor(label).long()
    value = torch.as_tensor(value, dtype=torch.float32)
    n, h, w = label.shape
    rest = (1.0 - value) / (K - 1)
    attn = rest.unsqueeze(1).repeat(1, K, 1, 1)
    if bg_value is not None:
        is_bg = label == BG
        bgv = torch.where(is_bg, 0.0, torch.as_tensor(bg_value, dtype=torch.float32))
        # the leftover mass is spread over the slots that are neither argmax nor background
        other = (1.0 - value - bgv) / torch.where(is_bg, K - 1.0, K - 2.0)
        attn = other.unsqueeze(1).repeat(1, K, 1, 1)
        attn[:, BG] = torch.where(is_bg, value, bgv)
    attn.scatter_(1, label.unsqueeze(1), value.unsqueeze(1))
    assert torch.equal(attn.argmax(1), label)
    torch.testing.assert_close(attn.sum(1), torch.ones(n, h, w))
    return attn, 1.0 - attn[:, BG]


def blank(n: int = 1, v: float = 0.97):
    return np.full((n, H, W), BG), np.full((n, H, W), v, dtype=np.float32)


def cfg(**distill) -> DistillConfig:
    c = DistillConfig()
    for k, v in distill.items():
        setattr(c, k, v)
    return c


def test_two_blobs_one_slot_one_to_many_vs_one_to_one():
    label, value = blank()
    label[0, 1:5, 1:5] = 1  # 16 px
    label[0, 6:10, 12:17] = 1  # 20 px, same slot, separated
    value[label == 1] = 0.95
    attn, fg = teacher_maps(label, value)
    many = extract_candidates(attn, fg, cfg(), BG)
    assert many.n_kept == 2 and many.n_dropped == 0
    assert many.num_candidates == 2 and many.valid.all()
    assert many.slot.tolist() == [[1, 1]]
    masks = many.masks
    assert masks.shape == (1, 2, H, W) and masks.dtype == torch.float32
    # raster order: the upper-left blob first
    assert masks[0, 0].sum() == 16 and masks[0, 0, 1:5, 1:5].all()
    assert masks[0, 1].sum() == 20 and masks[0, 1, 6:10, 12:17].all()
    one = extract_candidates(attn, fg, cfg(connection="one_to_one"), BG)
    assert one.n_kept == 1 and one.num_candidates == 1
    assert one.masks[0, 0].sum() == 36
    torch.testing.assert_close(one.masks[0, 0], (torch.as_tensor(label[0]) == 1).float())


def test_small_region_is_dropped_at_or_under_threshold():
    label, value = blank()
    label[0, 1:5, 1:5] = 1  # 16 px
    label[0, 8:10, 10:15] = 2  # 10 px == min_region_pixels: dropped
    label[0, 8:10, 0:6] = 3  # 12 px (a 2x6 strip... kept)
    value[label != BG] = 0.95
    attn, fg = teacher_maps(label, value)
    c = extract_candidates(attn, fg, cfg(min_region_pixels=10), BG)
    assert c.n_small == 1 and c.n_kept == 2
    assert sorted(c.slot[0].tolist()) == [1, 3]
    c = extract_candidates(attn, fg, cfg(min_region_pixels=9), BG)
    assert c.n_small == 0 and c.n_kept == 3


def test_eq2_scores_by_hand_both_sources():
    label, value = blank()
    label[0, 0:4, 0:4] = 1  # 16 px: attention 0.99 on 8 px, 0.85 on 8 px -> 0.92
    value[0, 0:2, 0:4] = 0.99
    value[0, 2:4, 0:4] = 0.85
    label[0, 6:10, 10:14] = 2  # 16 px: attention 0.88 everywhere
    value[0, 6:10, 10:14] = 0.88
    bg_value = np.zeros((1, H, W), dtype=np.float32)
    bg_value[0, 6:10, 10:14] = 0.02  # W_fg = 0.98 inside slot 2's blob
    bg_value[0, 0:4, 0:4] = 0.1  # W_fg = 0.9 inside slot 1's blob
    attn, fg = teacher_maps(label, value, bg_value)

    att = extract_candidates(attn, fg, cfg(score_source="attention"), BG)
    # kept first: slot 1's blob (0.92 > 0.9) then slot 2's (0.88, dropped)
    assert att.slot.tolist() == [[1, 2]]
    torch.testing.assert_close(att.scores, torch.tensor([[0.92, 0.88]]))
    assert att.valid.tolist() == [[True, False]]
    assert att.n_kept == 1 and att.n_dropped == 1 and att.max_kept == 1

    fgs = extract_candidates(attn, fg, cfg(score_source="foreground"), BG)
    # W_fg: slot 2's blob 0.98 (kept), slot 1's blob exactly 0.9: not above p
    assert fgs.slot.tolist() == [[2, 1]]
    torch.testing.assert_close(fgs.scores, torch.tensor([[0.98, 0.9]]))
    assert fgs.valid.tolist() == [[True, False]]

    # the dense form of eq. (2) gives the same numbers as the segment form
    dense = candidate_score(att.masks, attn.amax(1, keepdim=True))
    torch.testing.assert_close(dense, att.scores)


def test_candidate_score_formula():
    masks = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])  # [1, 2, 2, 2]
    source = torch.tensor([[[[0.5, 0.9], [0.1, 0.1]]]])  # [1, 1, 2, 2]
    torch.testing.assert_close(candidate_score(masks, source), torch.tensor([[0.7, 0.0]]))
    ids = torch.tensor([0, 0, -1, 1])
    seg = candidate_score(ids, torch.tensor([0.5, 0.9, 0.3, 0.2]), num=3)
    torch.testing.assert_close(seg, torch.tensor([0.7, 0.2, 0.0]))


def test_batched_equals_frame_by_frame_and_kept_first():
    g = torch.Generator().manual_seed(0)
    logits = torch.nn.functional.avg_pool2d(
        torch.randn(6, K, 24, 40, generator=g), 5, stride=1, padding=2
    )
    attn = torch.softmax(logits * 12, dim=1)
    fg = 1 - attn[:, BG]
    for conn in ("one_to_many", "one_to_one"):
        # attention scores spread around p here, so some candidates are kept and some dropped
        c = cfg(connection=conn, min_region_pixels=3, p=0.65, score_source="attention")
        batch = extract_candidates(attn, fg, c, BG)
        assert batch.n_kept > 0 and batch.n_dropped > 0
        for i in range(6):
            one = extract_candidates(attn[i : i + 1], fg[i : i + 1], c, BG)
            k = one.num_candidates
            torch.testing.assert_close(batch.masks[i : i + 1, :k], one.masks)
            torch.testing.assert_close(batch.scores[i : i + 1, :k], one.scores)
            assert torch.equal(batch.valid[i : i + 1, :k], one.valid)
            assert not batch.present[i, k:].any()
        # kept candidates form a prefix of each frame
        v = batch.valid.int()
        assert torch.equal(v, v.sort(dim=1, descending=True).values)


def test_quirk_slot0_background():
    label, value = blank()
    label[0, 1:5, 1:5] = 0  # slot 0's blob
    label[0, 6:10, 12:17] = 1
    value[label != BG] = 0.95
    attn, fg = teacher_maps(label, value)
    assert extract_candidates(attn, fg, cfg(), BG).n_kept == 2
    quirk = extract_candidates(attn, fg, cfg(quirk_slot0_background=True), BG)
    assert quirk.n_kept == 1 and quirk.slot.tolist() == [[1]]


def test_quirk_first_component():
    """First component in raster order: no extraction filter, then the W_fg filter of the loss."""
    label, value = blank()
    label[0, 0:4, 0:4] = 2  # first component of slot 2
    label[0, 7:11, 14:18] = 2  # split-off component of slot 2
    value[label == 2] = 0.7  # own attention 0.7 < p
    bg_value = np.full((1, H, W), 0.03, dtype=np.float32)
    bg_value[0, 7:11, 14:18] = 0.02  # W_fg 0.97 / 0.98 inside the two blobs
    attn, fg = teacher_maps(label, value, bg_value)
    att = cfg(score_source="attention")
    assert extract_candidates(attn, fg, att, BG).n_kept == 0  # own attention: both below p
    assert extract_candidates(attn, fg, cfg(), BG).n_kept == 2  # default W_fg: both above p
    quirk = extract_candidates(
        attn, fg, cfg(quirk_first_component=True, score_source="attention"), BG
    )
    # the first keeps its label unconditionally and passes the W_fg filter; the split-off one
    # fails the extraction filter (attention 0.7)
    assert quirk.n_kept == 1 and quirk.n_dropped == 1
    assert quirk.masks[0, 0, 0:4, 0:4].all() and quirk.masks[0, 0].sum() == 16
    torch.testing.assert_close(quirk.scores[0, 0], torch.tensor(0.97))  # weight source: W_fg


def test_both_quirks_background_island_becomes_candidate():
    """Slot 0's blob enclosed by slot 1's ring: merged into the background label, it is a
    split-off component of that label and, confident on W_fg, becomes a candidate (reference)."""
    label, value = blank()
    label[0, 2:9, 2:9] = 1  # ring of slot 1
    label[0, 4:7, 4:8] = 0  # slot 0 inside: 12 px
    value[label == 1] = 0.95
    value[label == 0] = 0.96
    attn, fg = teacher_maps(label, value)
    base = extract_candidates(attn, fg, cfg(), BG)
    assert base.n_kept == 2  # the ring and slot 0's blob
    only0 = extract_candidates(attn, fg, cfg(quirk_slot0_background=True), BG)
    assert only0.n_kept == 1 and only0.slot.tolist() == [[1]]
    both = extract_candidates(
        attn, fg, cfg(quirk_slot0_background=True, quirk_first_component=True), BG
    )
    assert both.n_kept == 2
    island = both.masks[0, both.slot[0].tolist().index(-1)]  # the background label is -1
    assert island.sum() == 12 and island[4:7, 4:8].all()


def test_quirk_mode_reproduces_reference_loop():
    """With both quirks and W_fg scores, the kept masks equal the reference-style loop's."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "pseudo_labels.py"
    spec = importlib.util.spec_from_file_location("bench_pseudo_labels", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    attn, fg = bench.smooth_attention(4, 12, 40, 64, seed=1, blobs_per_slot=1.0, max_radius=14.0)
    ref_masks, ref_kept, out_of_ids = bench.reference_pseudo_masks(attn, fg, 11, 10, 0.9, 2)
    assert out_of_ids == 0
    c = cfg(quirk_slot0_background=True, quirk_first_component=True, score_source="foreground")
    ours = extract_candidates(attn, fg, c, 11)
    assert ours.n_kept == int(ref_kept.sum()) > 0
    ref = ref_masks.reshape(4, -1, 40 * 64)
    mine = ours.masks.reshape(4, -1, 40 * 64)
    for i in range(4):
        a = {bytes(m.numpy().astype(np.uint8)) for m, k in zip(ref[i], ref_kept[i]) if k}
        b = {bytes(m.numpy().astype(np.uint8)) for m, v in zip(mine[i], ours.valid[i]) if v}
        assert a == b


def test_bad_input():
    attn = torch.rand(2, K, 4, 4)
    with pytest.raises(ValueError, match="fg"):
        extract_candidates(attn, torch.rand(2, 4, 5), DistillConfig(), BG)
    with pytest.raises(ValueError, match="bg_index"):
        extract_candidates(attn, torch.rand(2, 4, 4), DistillConfig(), K)


def test_segment_scores_equal_dense_scores_and_sum_in_index_order():
    """Eq. (2) on segment ids (the batched path) equals the dense formula, and its per-segment
    sums are the index-order sums bincount(weights=) gives on the CPU, bit for bit (the op it
    replaced; CUDA has no deterministic weighted bincount, docs/performance.md §6)."""
    g = torch.Generator().manual_seed(0)
    num, p = 7, 5000
    ids = torch.randint(-1, num, (p,), generator=g)
    w = torch.rand(p, generator=g)
    score = candidate_score(ids, w, num)
    dense = torch.stack([(ids == s).float() for s in range(num)])  # [num, P] as [C, h=1, w=P]
    assert torch.allclose(score, candidate_score(dense[:, None], w[None, None]), atol=1e-6)
    count = torch.bincount(ids + 1, minlength=num + 1)[1:].clamp(min=1)
    summed = torch.bincount(ids + 1, weights=w, minlength=num + 1)[1:]
    assert torch.equal(score, summed / count)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_segment_scores_run_under_strict_determinism_on_cuda():
    """No op of the candidate path lacks a deterministic CUDA kernel (strict mode raises)."""
    ids = torch.randint(-1, 9, (10_000,), device="cuda")
    w = torch.rand(10_000, device="cuda")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        a, b = candidate_score(ids, w, 9), candidate_score(ids, w, 9)
    finally:
        torch.use_deterministic_algorithms(before)
    assert torch.equal(a, b)
