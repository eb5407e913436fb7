"""Metrics against independent oracles: scikit-learn's ARI, the reference's ARI formula transcribed
with one_hot, and hand-counted F1 / recall / best-overlap cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score

from diod_ray import metrics
from diod_ray.metrics import MetricAccumulator, all_ari, f1_at_50, fg_ari


def kipf_ari(true_ids: torch.Tensor, pred_ids: torch.Tensor, drop_bg: bool) -> float:
    """The reference's utils.adjusted_rand_index (Kipf/MONet), transcribed in float64:
    GT one-hot WITHOUT num_classes (background column dropped for fg-ARI), argmax prediction."""
    true_mask = F.one_hot(true_ids.reshape(1, -1)).double()  # [1,N,max_id+1]
    if drop_bg:
        true_mask = true_mask[..., 1:]
    pred_mask = F.one_hot(pred_ids.reshape(1, -1)).double()
    true_group_ids = torch.argmax(true_mask, -1)
    pred_group_ids = torch.argmax(pred_mask, -1)
    n_points = torch.sum(true_mask, dim=[1, 2])
    nij = torch.einsum("bji,bjk->bki", pred_mask, true_mask)
    a = torch.sum(nij, dim=1)
    b = torch.sum(nij, dim=2)
    rindex = torch.sum(nij * (nij - 1), dim=[1, 2])
    aindex = torch.sum(a * (a - 1), dim=1)
    bindex = torch.sum(b * (b - 1), dim=1)
    expected = aindex * bindex / (n_points * (n_points - 1))
    max_rindex = (aindex + bindex) / 2
    ari = (rindex - expected) / (max_rindex - expected + 1e-12)

    def all_equal(v):
        return torch.all(torch.eq(v, v[..., :1]), dim=-1)

    both_single = torch.logical_and(all_equal(true_group_ids), all_equal(pred_group_ids))
    return float(torch.where(both_single, torch.ones_like(ari), ari)[0])


def random_clip(rng, T=None, H=None, W=None, n_gt=None, n_pred=None):
    T = T or int(rng.integers(1, 4))
    H = H or int(rng.integers(1, 10))
    W = W or int(rng.integers(1, 10))
    n_gt = n_gt or int(rng.integers(1, 6))
    n_pred = n_pred or int(rng.integers(1, 7))
    return rng.integers(0, n_gt, (T, H, W)), rng.integers(0, n_pred, (T, H, W))


def sk_fg(g, p):
    fg = g > 0
    return adjusted_rand_score(g[fg], p[fg]) if fg.any() else math.nan


# ---------------------------------------------------------------------------------------------
# ARI
# ---------------------------------------------------------------------------------------------


def test_ari_matches_sklearn_on_random_clips():
    rng = np.random.default_rng(0)
    for _ in range(250):
        g, p = random_clip(rng)
        assert all_ari(g, p) == pytest.approx(adjusted_rand_score(g.ravel(), p.ravel()), abs=1e-9)
        expect = sk_fg(g, p)
        if math.isnan(expect):
            assert math.isnan(fg_ari(g, p))
        else:
            assert fg_ari(g, p) == pytest.approx(expect, abs=1e-9)


def test_ari_matches_sklearn_on_structured_large_clip():
    # blocky objects + a prediction that is the GT with label noise and one merge: ARI far from 0/1
    rng = np.random.default_rng(1)
    g = np.zeros((5, 60, 120), np.int64)
    for k in range(1, 8):
        y, x = rng.integers(0, 45), rng.integers(0, 100)
        g[:, y : y + 15, x : x + 20] = k
    p = g.copy()
    p[p == 3] = 2
    noise = rng.random(p.shape) < 0.1
    p[noise] = rng.integers(0, 12, noise.sum())
    a = all_ari(torch.from_numpy(g), torch.from_numpy(p))
    assert 0.2 < a < 0.99
    assert a == pytest.approx(adjusted_rand_score(g.ravel(), p.ravel()), abs=1e-9)
    assert fg_ari(g, p) == pytest.approx(sk_fg(g, p), abs=1e-9)


@pytest.mark.parametrize(
    "case",
    [
        "single_cluster_both",
        "single_gt_many_pred",
        "empty_fg",
        "all_one_slot",
        "identical",
        "one_px",
    ],
)
def test_ari_edge_cases_against_sklearn(case):
    rng = np.random.default_rng(2)
    g, p = random_clip(rng, T=2, H=6, W=7, n_gt=4, n_pred=5)
    if case == "single_cluster_both":
        g[:] = 3
        p[:] = 1
    elif case == "single_gt_many_pred":
        g[:] = 2
    elif case == "empty_fg":
        g[:] = 0
    elif case == "all_one_slot":
        p[:] = 4
    elif case == "identical":
        p = (g * 7) % 11  # a relabelling
    elif case == "one_px":
        g[:] = 0
        g[0, 0, 0] = 5
    assert all_ari(g, p) == pytest.approx(adjusted_rand_score(g.ravel(), p.ravel()), abs=1e-12)
    if case == "empty_fg":
        # sklearn says 1.0 on zero points; the clean protocol calls it undefined
        assert math.isnan(fg_ari(g, p))
    else:
        assert fg_ari(g, p) == pytest.approx(sk_fg(g, p), abs=1e-12)


def test_reference_formula_matches_transcribed_reference():
    rng = np.random.default_rng(3)
    checked_nan = 0
    for i in range(150):
        g, p = random_clip(rng, n_gt=int(rng.integers(1, 5)))
        if i % 5 == 0:  # global-id style clips: sparse large ids, sometimes a single object
            g = np.where(g > 0, g + int(rng.integers(0, 20)), 0)
        if i % 7 == 0:
            p[:] = int(rng.integers(0, 3))
        gt, pr = torch.from_numpy(g), torch.from_numpy(p)
        for drop_bg, fn in ((True, fg_ari), (False, all_ari)):
            if drop_bg and g.max() == 0:
                continue  # the reference skips these clips (and its one_hot would be empty)
            ours = fn(g, p, protocol="reference")
            theirs = kipf_ari(gt, pr, drop_bg)
            if math.isnan(theirs):
                checked_nan += 1
                assert math.isnan(ours)
            else:
                assert ours == pytest.approx(theirs, abs=1e-6)
    assert checked_nan > 0


def test_reference_quirks_single_object_zero_and_override():
    g = np.zeros((2, 4, 4), np.int64)
    g[:, 1:3, 1:3] = 7  # one object with id 7
    p = g.copy()  # perfect prediction
    assert fg_ari(g, p, protocol="reference") == 0.0  # single GT object: exactly 0
    assert fg_ari(g, p) == 1.0  # standard ARI: both fg sides single cluster -> 1
    # whole clip one object, prediction one slot: the override gives 1
    assert fg_ari(np.full((1, 3, 3), 4), np.zeros((1, 3, 3), int), protocol="reference") == 1.0


# ---------------------------------------------------------------------------------------------
# F1@50
# ---------------------------------------------------------------------------------------------


def test_f1_hand_counted():
    # frame 0: GT 1 (left 2 cols of a 4x4), GT 2 (right 2 cols). Pred 1 = left 2 cols exactly (TP),
    # pred 2 covers right col only: IoU = 4/8 = 0.5, not > 0.5 -> FP and GT 2 missed.
    g0 = np.zeros((4, 4), int)
    g0[:, :2], g0[:, 2:] = 1, 2
    p0 = np.zeros((4, 4), int)
    p0[:, :2], p0[:, 3] = 1, 2
    # frame 1: no GT object, one predicted sliver (FP); background slot (0) never a prediction.
    g1 = np.zeros((4, 4), int)
    p1 = np.zeros((4, 4), int)
    p1[0, 0] = 3
    # frame 2: GT 1 covered 3/4 by pred 5 (IoU 0.75, TP), no other prediction.
    g2 = np.zeros((4, 4), int)
    g2[0, :] = 1
    p2 = np.zeros((4, 4), int)
    p2[0, :3] = 5
    out = f1_at_50(np.stack([g0, g1, g2]), np.stack([p0, p1, p2]))
    assert out["tp"] == 2 and out["n_pred"] == 4 and out["n_gt"] == 3
    assert out["precision"] == pytest.approx(2 / 4)
    assert out["recall"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx(2 * 2 / 7)


def test_f1_counts_every_frame_separately_and_matches_bruteforce():
    rng = np.random.default_rng(4)
    for _ in range(50):
        g, p = random_clip(rng, T=3, H=6, W=6, n_gt=3, n_pred=4)
        tp = n_pred = n_gt = 0
        for t in range(g.shape[0]):
            gids = [i for i in np.unique(g[t]) if i > 0]
            pids = [i for i in np.unique(p[t]) if i > 0]
            n_gt += len(gids)
            n_pred += len(pids)
            for a in gids:
                for b in pids:
                    inter = np.sum((g[t] == a) & (p[t] == b))
                    union = np.sum((g[t] == a) | (p[t] == b))
                    tp += inter / union > 0.5
        out = f1_at_50(g, p)
        assert (out["tp"], out["n_pred"], out["n_gt"]) == (tp, n_pred, n_gt)


def test_only_background_predicted_gives_zero_predictions():
    g = np.zeros((1, 3, 3), int)
    g[0, 0] = 1
    out = f1_at_50(g, np.zeros_like(g))
    assert out["n_pred"] == 0 and out["tp"] == 0 and out["n_gt"] == 1 and out["f1"] == 0.0


# ---------------------------------------------------------------------------------------------
# Streaming accumulator
# ---------------------------------------------------------------------------------------------


def _batch(rng, B=4, T=3, H=8, W=9):
    g = rng.integers(0, 4, (B, T, H, W))
    p = np.where(rng.random((B, T, H, W)) < 0.7, g % 13, rng.integers(0, 6, (B, T, H, W)))
    g[0] = np.where(g[0] > 0, 1, 0)  # max id 1: the reference skips it
    g[1, :, :, :] = np.where(g[1] > 0, 5, 0)  # one object only
    return g, p


def test_accumulator_equals_per_clip_computation():
    rng = np.random.default_rng(5)
    batches = [_batch(rng) for _ in range(3)]
    clean, ref = MetricAccumulator("clean"), MetricAccumulator("reference")
    fg_c, all_c, fg_r, all_r = [], [], [], []
    tp = n_pred = n_gt = 0
    for g, p in batches:
        clean.update(g, p)
        ref.update(torch.from_numpy(g), torch.from_numpy(p))
        for gc, pc in zip(g, p):
            n_obj = len(np.unique(gc[gc > 0]))
            all_c.append(adjusted_rand_score(gc.ravel(), pc.ravel()))
            if n_obj >= 2:
                fg_c.append(sk_fg(gc, pc))
            if gc.max() > 1:
                fr = kipf_ari(torch.from_numpy(gc), torch.from_numpy(pc), True)
                if not math.isnan(fr):
                    fg_r.append(fr)
                    all_r.append(kipf_ari(torch.from_numpy(gc), torch.from_numpy(pc), False))
            f = f1_at_50(gc, pc)
            tp, n_pred, n_gt = tp + f["tp"], n_pred + f["n_pred"], n_gt + f["n_gt"]
    sc, sr = clean.summary(), ref.summary()
    assert sc["fg_ari"] == pytest.approx(np.mean(fg_c), abs=1e-9)
    assert sc["all_ari"] == pytest.approx(np.mean(all_c), abs=1e-9)
    assert sc["fg_ari_clips"] == len(fg_c) and sc["all_ari_clips"] == 12
    assert sc["clips_one_object"] >= 3  # clips 1 of each batch (clip 0 may have one too)
    assert sr["fg_ari"] == pytest.approx(np.mean(fg_r), abs=1e-6)
    assert sr["all_ari"] == pytest.approx(np.mean(all_r), abs=1e-6)
    assert sr["ari_skipped_max_id"] == 3
    for s in (sc, sr):
        assert (s["tp"], s["n_pred"], s["n_gt"]) == (tp, n_pred, n_gt)
        assert s["f1"] == pytest.approx(2 * tp / (n_pred + n_gt))
        assert s["clips"] == 12 and s["frames"] == 36
        assert s["moving_recall"] is None and s["static_recall"] is None  # no flags: null


@pytest.mark.parametrize("scale", [200_000, 2_000_000])
def test_global_ids_are_compacted_and_give_the_same_numbers(scale):
    # TRI-PD-style global ids (large, sparse) are compacted (look-up table, or torch.unique beyond
    # 2^22); a monotone relabelling that keeps 0 and 1 must not change any number of either protocol.
    rng = np.random.default_rng(7)
    g, p = _batch(rng)
    big = np.where(g > 1, g * scale + 17, g)
    moving = rng.random((4, 3, 6)) < 0.5
    big_moving = np.zeros((4, 3, 5 * scale + 18), bool)
    big_moving[..., [0, 1]] = moving[..., [0, 1]]
    for k in (2, 3, 5):
        big_moving[..., k * scale + 17] = moving[..., k]
    tables = metrics.contingency_tables(torch.from_numpy(big), torch.from_numpy(p))
    assert tables.gt_ids.tolist() == [0, 1, 2 * scale + 17, 3 * scale + 17, 5 * scale + 17]
    for protocol in ("clean", "reference"):
        a, b = MetricAccumulator(protocol), MetricAccumulator(protocol)
        a.update(g, p, moving)
        b.update(big, p, big_moving)
        assert a.summary() == pytest.approx(b.summary(), nan_ok=True)


def test_merge_and_tensor_roundtrip_equal_one_accumulator():
    rng = np.random.default_rng(6)
    batches = [_batch(rng) for _ in range(4)]
    moving = [rng.random((4, 3, 6)) < 0.5 for _ in range(4)]
    whole = MetricAccumulator("reference")
    parts = [MetricAccumulator("reference"), MetricAccumulator("reference")]
    for i, ((g, p), m) in enumerate(zip(batches, moving)):
        whole.update(g, p, m)
        parts[i % 2].update(g, p, m)
    merged = MetricAccumulator.from_state_dict(parts[0].state_dict()).merge(parts[1])
    summed = MetricAccumulator.from_tensor("reference", parts[0].to_tensor() + parts[1].to_tensor())
    for acc in (merged, summed):
        a, b = acc.summary(), whole.summary()
        for k in a:
            assert a[k] == pytest.approx(b[k], nan_ok=True), k
    with pytest.raises(ValueError, match="protocol"):
        whole.merge(MetricAccumulator("clean"))


def test_static_and_moving_recall_and_mbo_hand_built():
    # one clip, 2 frames, 4x4. GT 1 moving in both frames, GT 2 static, GT 3 moving only in frame 1.
    g = np.zeros((1, 2, 4, 4), int)
    g[0, :, 0, :] = 1  # row 0
    g[0, :, 1, :] = 2  # row 1
    g[0, 1, 3, :] = 3  # row 3, frame 1 only
    p = np.zeros_like(g)
    p[0, :, 0, :] = 4  # GT 1 exactly: IoU 1 (recalled both frames)
    p[0, 0, 1, :2] = 5  # frame 0: half of GT 2: IoU 0.5 -> not recalled
    p[0, 1, 1, :3] = 5  # frame 1: 3/4 of GT 2: IoU 0.75 -> recalled
    p[0, 1, 3, :1] = 6  # GT 3: IoU 0.25 -> missed
    moving = np.zeros((1, 2, 4), bool)
    moving[0, :, 1] = True
    moving[0, 1, 3] = True
    acc = MetricAccumulator("clean")
    acc.update(g, p, torch.from_numpy(moving))
    s = acc.summary()
    assert (s["n_moving_gt"], s["n_static_gt"]) == (3, 2)
    assert s["moving_recall"] == pytest.approx(2 / 3)  # GT 1 twice, GT 3 missed
    assert s["static_recall"] == pytest.approx(1 / 2)  # GT 2: frame 1 only
    assert s["recall"] == pytest.approx(3 / 5)
    assert s["mbo"] == pytest.approx((1 + 1 + 0.5 + 0.75 + 0.25) / 5)


def test_bad_inputs_have_clear_errors():
    acc = MetricAccumulator("clean")
    with pytest.raises(ValueError, match="same shape"):
        acc.update(np.zeros((1, 2, 4, 4), int), np.zeros((1, 2, 2, 2), int))
    with pytest.raises(ValueError, match="id 3"):
        g = np.zeros((1, 1, 2, 2), int)
        g[0, 0, 0, 0] = 3
        acc.update(g, g, np.zeros((1, 1, 2), bool))
    with pytest.raises(TypeError, match="integer"):
        fg_ari(np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), int))
    with pytest.raises(ValueError, match="protocol"):
        MetricAccumulator("paper")


def test_downsample_nearest_matches_torch_interpolate():
    ids = torch.randint(0, 50, (2, 3, 37, 75))
    ours = metrics.downsample_nearest(ids, (10, 19))
    theirs = F.interpolate(ids.float(), size=(10, 19), mode="nearest").long()
    assert torch.equal(ours, theirs)


def test_clips_without_moving_flags_count_in_recall_only():
    """Issue #13 item 8: a clip converted without moving flags (moving_known False) counts in
    recall but in neither static nor moving recall; with no flags at all both are None (JSON
    null), never NaN and never all of recall reported as static recall."""
    rng = np.random.default_rng(11)
    g, p = _batch(rng)
    moving = rng.random((4, 3, 6)) < 0.5
    flagged = MetricAccumulator()
    flagged.update(g[:2], p[:2], moving[:2])
    mixed = MetricAccumulator()
    mixed.update(g, p, moving, torch.tensor([True, True, False, False]))
    a, b = flagged.summary(), mixed.summary()
    assert (b["n_static_gt"], b["n_moving_gt"]) == (a["n_static_gt"], a["n_moving_gt"])
    assert b["moving_recall"] == a["moving_recall"] and b["n_gt"] > a["n_gt"]
    none = MetricAccumulator()
    none.update(g, p, moving, torch.zeros(4, dtype=torch.bool))
    s = none.summary()
    assert s["recall"] is not None and s["static_recall"] is None and s["moving_recall"] is None
    empty = MetricAccumulator().summary()
    assert empty["f1"] is None and empty["recall"] is None
    import json

    json.dumps(s, allow_nan=False)  # strict JSON
