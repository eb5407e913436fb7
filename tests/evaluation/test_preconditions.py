"""Preconditions of a test of DIOD's claim (diod_ray/preconditions.py, its counters in
diod_ray/gate_counts.py; issue 21): the gates and the verdict on hand-made numbers, the counters on
hand-made tensors, the whole measurement on a model with hand-set outputs (one process, and two
gloo ranks each with half of the clips), and the final JSON line of a run (Ray, slow)."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from torch import nn

from diod_ray.config import Config
from diod_ray.gate_counts import GateCounts, fg_counts, mask_gt_hits, motion_counts
from diod_ray.model.diod import ModelOutput
from diod_ray.preconditions import (
    GATE_NAMES,
    GATES,
    MAX_KEPT_AREA_RATIO,
    MIN_BURN_IN_F1,
    MIN_HEADROOM,
    MIN_KEPT_PRECISION,
    MIN_STATIC_FG_CONTRAST,
    console_lines,
    from_metrics,
    gate_values,
    measure_preconditions,
    premise_line,
    summary_json,
    to_metrics,
    verdict,
)

# ---------------------------------------------------------------------------------------------
# gates and verdict on hand-made numbers
# ---------------------------------------------------------------------------------------------

PASSING = {
    "burn_in_f1": 0.169,  # the paper's switch point
    "headroom": 0.20,
    "static_fg_contrast": 0.45,
    "kept_precision": 0.40,
    "kept_area_ratio": 1.2,
}


def test_thresholds_are_the_issues():
    assert GATE_NAMES == (
        "burn_in_f1",
        "headroom",
        "static_fg_contrast",
        "kept_precision",
        "kept_area_ratio",
    )
    assert (MIN_BURN_IN_F1, MIN_HEADROOM, MIN_STATIC_FG_CONTRAST) == (0.15, 0.10, 0.30)
    assert (MIN_KEPT_PRECISION, MAX_KEPT_AREA_RATIO) == (0.25, 2.0)


def test_all_gates_pass_is_testable():
    v = verdict(PASSING)
    assert v == {"testable": True, "failed": [], "text": "testable"}


@pytest.mark.parametrize(
    "name, at, beyond",
    [
        ("burn_in_f1", 0.15, 0.149),  # >= 15 %
        ("headroom", 0.10, 0.099),  # static recall >= 10 points below moving recall
        ("static_fg_contrast", 0.30, 0.299),  # W_fg static >= background + 0.3
        ("kept_precision", 0.25, 0.249),  # >= 25 %
        ("kept_area_ratio", 2.0, 2.01),  # <= 2x the mean object area
    ],
)
def test_each_gate_passes_at_its_threshold_and_fails_beyond(name, at, beyond):
    assert verdict({**PASSING, name: at})["testable"]
    v = verdict({**PASSING, name: beyond})
    assert v["failed"] == [name] and v["text"] == f"untestable: {name}"


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_gate_that_cannot_be_computed_fails_and_says_why(missing):
    values = {**PASSING, "kept_precision": missing, "static_fg_contrast": missing}
    v = verdict(values)
    assert v["failed"] == ["static_fg_contrast", "kept_precision"]
    assert v["text"] == "untestable: static_fg_contrast, kept_precision"
    out = summary_json(values)
    g = out["gates"]["kept_precision"]
    assert (
        g["value"] is None and g["passed"] is False and g["why"] == "the teacher kept no candidate"
    )
    assert out["gates"]["static_fg_contrast"]["why"].startswith("no static GT object")
    assert out["gates"]["burn_in_f1"] == {
        "value": 0.169,
        "threshold": 0.15,
        "comparison": ">=",
        "passed": True,
        "why": None,
    }
    json.dumps(out, allow_nan=False)
    lines = console_lines(values)
    assert lines[2] == (
        "[diod_ray] gate static_fg_contrast: null (need >= 0.30) FAIL "
        "(no static GT object with known moving flags)"
    )
    assert lines[0] == "[diod_ray] gate burn_in_f1: 16.9 % (need >= 15.0 %) pass"
    assert lines[1] == "[diod_ray] gate headroom: 20.0 points (need >= 10.0 points) pass"
    assert lines[4] == "[diod_ray] gate kept_area_ratio: 1.20x (need <= 2.00x) pass"
    assert lines[-1].endswith("untestable: static_fg_contrast, kept_precision")


def test_gate_values_from_parts():
    parts = {
        "f1": 0.2,
        "static_recall": 0.3,
        "moving_recall": 0.55,
        "fg_static": 0.7,
        "fg_background": 0.2,
        "kept_precision": 0.5,
        "kept_area": 0.06,
        "object_area": 0.02,
    }
    v = gate_values(parts)
    assert v["burn_in_f1"] == 0.2
    assert v["headroom"] == pytest.approx(0.25) and v["static_fg_contrast"] == pytest.approx(0.5)
    assert v["kept_area_ratio"] == pytest.approx(3.0)  # merged regions: fails
    assert verdict(v)["failed"] == ["kept_area_ratio"]
    # no static objects, no kept candidate: those gates are null
    v = gate_values({**parts, "static_recall": None, "fg_static": None, "kept_area": math.nan})
    assert v["headroom"] is None and v["static_fg_contrast"] is None
    assert v["kept_area_ratio"] is None


def test_metrics_round_trip_and_json():
    values = {**PASSING, "kept_precision": None, "motion_precision": 0.42}
    m = to_metrics(values)
    assert m["gates/testable"] == 0.0 and math.isnan(m["gates/kept_precision"])
    assert from_metrics(m) == values
    assert from_metrics({"burn_in/f1": 0.1}) is None  # not measured
    assert to_metrics(PASSING)["gates/testable"] == 1.0


# ---------------------------------------------------------------------------------------------
# counters on hand-made tensors
# ---------------------------------------------------------------------------------------------

H, W, K, BG = 8, 12, 4, 3


def hand_gt() -> torch.Tensor:
    """[H, W]: static object 1 (12 px), moving object 2 (15 px), static object 3 (6 px)."""
    gt = torch.zeros(H, W, dtype=torch.int64)
    gt[1:4, 1:5] = 1
    gt[5:8, 6:11] = 2
    gt[0:2, 9:12] = 3
    return gt


def hand_fg() -> torch.Tensor:
    """W_fg [H, W]: 0.98 on object 1, 0.96 on object 2, 0.4 on object 3, 0.95 on a 20-pixel
    background region (rows 4-7, cols 0-4), 0.2 on the other 43 background pixels."""
    fg = torch.full((H, W), 0.2)
    fg[1:4, 1:5] = 0.98
    fg[5:8, 6:11] = 0.96
    fg[0:2, 9:12] = 0.4
    fg[4:8, 0:5] = 0.95
    return fg


MOVING = torch.tensor([False, False, True, False])  # [G+1] indexed by GT id: object 2 moves


def test_fg_counts_per_object_and_background():
    gt, fg = hand_gt()[None], hand_fg()[None]
    c = fg_counts(fg, gt, MOVING[None])
    assert (c.static_objects, c.moving_objects, c.objects) == (2, 1, 3)
    assert c.static_fg_sum == pytest.approx(0.98 + 0.4)
    assert c.moving_fg_sum == pytest.approx(0.96)
    assert c.background_pixels == 63
    assert c.background_fg_sum == pytest.approx(20 * 0.95 + 43 * 0.2)
    assert c.object_area_sum == pytest.approx((12 + 15 + 6) / 96)
    s = c.summary()
    assert s["fg_static"] == pytest.approx(0.69) and s["fg_background"] == pytest.approx(27.6 / 63)
    # moving flags unknown (whole batch, or this clip): objects and background, no static / moving
    for unknown in (fg_counts(fg, gt, None), fg_counts(fg, gt, MOVING[None], torch.tensor([0]))):
        assert unknown.static_objects == 0 and unknown.moving_objects == 0
        assert unknown.objects == 3 and unknown.background_pixels == 63
        assert unknown.summary()["fg_static"] is None
    # an object id beyond the flags' columns counts as static (as candidate_gt_counts does)
    assert fg_counts(fg, gt, MOVING[None, :3]).static_objects == 2


def test_mask_hits_use_iou_above_half():
    gt = hand_gt()[None]
    masks = torch.zeros(1, 4, H, W)
    masks[0, 0, 5:8, 6:11] = 1  # object 2 exactly: IoU 1
    masks[0, 1, 0:3, 0:6] = 1  # 18 px over object 1's 12 px, 8 shared: IoU 8 / 22
    masks[0, 2, 0:2, 6:12] = 1  # 12 px holding object 3's 6 px: IoU exactly 0.5, not a hit
    hits = mask_gt_hits(masks, gt)
    assert hits.tolist() == [[True, False, False, False]]  # the empty mask hits nothing
    valid = torch.tensor([[True, True, True, False]])
    kept = torch.tensor([[True, False, True, False]])
    c = motion_counts(masks, valid, kept, gt)
    assert (c.motion_masks, c.motion_hit, c.filtered_masks, c.filtered_hit) == (3, 1, 2, 1)
    assert GateCounts.from_tensor(c.to_tensor()) == c and c.all_reduce() == c


# ---------------------------------------------------------------------------------------------
# the measurement, on a model whose outputs are set by hand
# ---------------------------------------------------------------------------------------------


class HandSetModel(nn.Module):
    """Returns stored outputs for clip ``c`` when frame pixel [0, 0, 0] of the clip holds ``c``
    (attention at the frame size, so the grid is the frame)."""

    def __init__(self, attn: torch.Tensor):  # [C, T, K, H, W]
        super().__init__()
        self.register_buffer("attn", attn)
        self.anchor = nn.Parameter(torch.zeros(()))  # a device for the evaluation code
        self.bg_index = BG

    def forward(self, video: torch.Tensor) -> ModelOutput:
        clip = video[:, 0, 0, 0, 0].round().long()  # [B]
        attn = self.attn[clip][:, : video.shape[1]]  # [B, t, K, H, W]
        b, t = attn.shape[:2]
        return ModelOutput(
            attn=attn,
            fg=1.0 - attn[:, :, BG],
            recon=torch.zeros_like(video),
            slots=torch.zeros(b, t, K, 1),
            state=None,
        )


def attention_for(fg: torch.Tensor, slot_of: torch.Tensor) -> torch.Tensor:
    """[K, H, W] attention (sums to 1) with W_fg = 1 - attn[BG] = ``fg`` and argmax ``slot_of``:
    an object slot's pixel gives its slot fg minus 0.001 per other object slot; a background
    pixel (fg <= 0.4) shares fg evenly over the object slots."""
    attn = torch.empty(K, H, W)
    attn[BG] = 1.0 - fg
    on_bg = slot_of == BG
    for k in range(K - 1):
        own = torch.where(slot_of == k, fg - 0.001 * (K - 2), torch.full_like(fg, 0.001))
        attn[k] = torch.where(on_bg, fg / (K - 1), own)
    assert torch.allclose(attn.sum(0), torch.ones(H, W)) and torch.equal(attn.argmax(0), slot_of)
    return attn


def hand_clips():
    """Two clips of T = 2 identical frames. Clip 0: the teacher segments object 1 (slot 0),
    object 2 (slot 1) and a 20-pixel background region (slot 2); object 3 is background. Clip 1:
    the same without the background region. Motion masks: object 2 exactly, and an 18-pixel box
    over object 1 (IoU 8 / 22) whose mean W_fg is below p."""
    gt, fg0 = hand_gt(), hand_fg()
    slot = torch.full((H, W), BG)
    slot[1:4, 1:5], slot[5:8, 6:11] = 0, 1
    slot0 = slot.clone()
    slot0[4:8, 0:5] = 2
    fg1 = fg0.clone()
    fg1[4:8, 0:5] = 0.2
    a0, a1 = attention_for(fg0, slot0), attention_for(fg1, slot)
    attn = torch.stack([torch.stack([a0, a0]), torch.stack([a1, a1])])  # [2, T, K, H, W]
    motion = torch.zeros(H, W, dtype=torch.int64)
    motion[0:3, 0:6] = 4
    motion[5:8, 6:11] = 9
    frames = torch.zeros(2, 2, 3, H, W)
    frames[1, :, 0, 0, 0] = 1.0  # clip index for HandSetModel
    batches = [
        {
            "frames": frames[c : c + 1],
            "gt": gt.expand(1, 2, H, W).clone(),
            "gt_moving": MOVING.expand(1, 2, 4).clone(),
            "moving_known": torch.tensor([True]),
            "motion": motion.expand(1, 2, H, W).clone(),
        }
        for c in range(2)
    ]
    return attn, batches


def hand_cfg() -> Config:
    cfg = Config()
    cfg.data.clip_len = 2
    cfg.distill.min_region_pixels = 2
    return cfg


def test_measurement_on_hand_set_outputs():
    attn, batches = hand_clips()
    model = HandSetModel(attn)
    cfg = hand_cfg()
    # clip 0 alone: 3 kept candidates per frame (slot 2's region has W_fg 0.95 > p), 2 hit
    v = measure_preconditions(model, model, lambda: batches[:1], cfg)
    assert v["frames"] == 2
    assert v["f1"] == pytest.approx(2 / 3)  # 3 predicted segments, 3 GT objects, 2 matched
    assert (v["static_recall"], v["moving_recall"]) == (0.5, 1.0)
    assert v["headroom"] == pytest.approx(0.5)
    assert v["fg_static"] == pytest.approx((0.98 + 0.4) / 2)
    assert v["fg_background"] == pytest.approx((20 * 0.95 + 43 * 0.2) / 63)
    assert v["static_fg_contrast"] == pytest.approx(0.69 - 27.6 / 63)  # 0.25: below 0.3
    assert v["kept_precision"] == pytest.approx(2 / 3) and v["n_kept"] == 6
    assert v["kept_area"] == pytest.approx(47 / 96 / 3)
    assert v["object_area"] == pytest.approx(33 / 96 / 3)
    assert v["kept_area_ratio"] == pytest.approx(47 / 33)
    # M: 2 masks per frame, 1 hits (object 2); M' keeps only that one (the box's W_fg is 0.55)
    assert v["motion_precision"] == 0.5 and v["n_motion_masks"] == 4
    assert v["filtered_motion_precision"] == 1.0 and v["n_filtered_masks"] == 2
    assert verdict(v)["text"] == "untestable: static_fg_contrast"
    # both clips: clip 1 has no background candidate and a darker background
    both = measure_preconditions(model, model, lambda: batches, cfg)
    assert both["kept_precision"] == pytest.approx(4 / 5) and both["frames"] == 4
    assert both["fg_background"] == pytest.approx((27.6 + 63 * 0.2) / 126)


def _rank_measure(rank: int, world: int, init: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        attn, batches = hand_clips()
        model = HandSetModel(attn)
        mine = batches[rank::world]  # every rank its share, the counters summed
        v = measure_preconditions(model, model, lambda: mine, hand_cfg(), all_reduce=True)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(v, f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_with_half_the_clips_each_measure_what_one_process_does(tmp_path):
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_rank_measure, args=(2, init, str(tmp_path)), nprocs=2, join=True)
    attn, batches = hand_clips()
    model = HandSetModel(attn)
    one = measure_preconditions(model, model, lambda: batches, hand_cfg())
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == one.keys()
        for k in one:
            assert got[k] == pytest.approx(one[k]), k


def test_gates_table_covers_every_gate():
    assert {g.name for g in GATES} == set(GATE_NAMES)
    assert all(g.if_null and g.what for g in GATES)


# ---------------------------------------------------------------------------------------------
# in a run: measured at the switch on val, in TensorBoard and the final JSON line (Ray)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # a whole Ray Train run of the smoke preset (local mode, Ray Data)
@pytest.mark.timeout(600)
def test_run_measures_the_gates_at_the_switch(smoke_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, summary = smoke_run.cfg, smoke_run.summary  # the session's run (tests/conftest.py)
    json.dumps(summary, allow_nan=False)
    pre = summary["preconditions"]
    assert pre["split"] == "val" and set(pre["gates"]) == set(GATE_NAMES)
    for name, g in pre["gates"].items():
        assert set(g) == {"value", "threshold", "comparison", "passed", "why"}, name
        assert (g["value"] is None) == (g["why"] is not None), name
    failed = [n for n, g in pre["gates"].items() if not g["passed"]]
    assert {"motion_precision", "filtered_motion_precision"} <= set(pre)
    # all of the smoke val split: 4 clips of 3 frames
    assert pre["measured"]["frames"] == 4 * cfg.data.clip_len
    # the data's premise, measured before training, joins the verdict
    premise = summary["premise"]
    assert premise["premise_holds"] in (True, False) or premise["skipped"]
    named = (["premise"] if premise.get("premise_holds") is False else []) + failed
    expected = "testable" if not named else "untestable: " + ", ".join(named)
    if premise.get("premise_holds") is None:
        expected += " (premise not measured)"
    assert pre["verdict"] == expected
    acc = EventAccumulator(str(smoke_run.run_dir / "tensorboard"))
    acc.Reload()
    burn_in_end = cfg.schedule.burn_in_epochs * cfg.schedule.steps_per_epoch
    first = acc.Scalars("gates/testable")[0]  # at the switch (the end logs ts.metrics again)
    assert (first.step, first.value) == (burn_in_end, float(not failed))  # the gates alone


def test_the_premise_joins_the_verdict_and_leads_it_when_it_fails():
    fails = {"premise_holds": False, "appearance_auc": 0.851, "appearance_auc_static": 0.857}
    fails.update(colour_auc=0.476, colour_auc_static=None, rule="the rule")
    ok, no_headroom = PASSING, {**PASSING, "headroom": 0.0}
    assert verdict(ok, fails) == {
        "testable": False,
        "failed": ["premise"],
        "text": "untestable: premise",
    }
    assert verdict(no_headroom, fails)["text"] == "untestable: premise, headroom"
    assert verdict(ok, {**fails, "premise_holds": True})["text"] == "testable"
    skipped = {"skipped": "split 'val' has no GT (the classifiers learn from it)"}
    assert verdict(no_headroom, skipped)["text"] == "untestable: headroom (premise not measured)"
    assert verdict(ok, skipped)["testable"]  # not measured: said, not counted as failed
    assert verdict(ok, None)["text"] == "testable"  # not asked for: a burn-in-only run
    assert summary_json(no_headroom, premise=fails)["verdict"] == "untestable: premise, headroom"
    assert premise_line(fails) == (
        "[diod_ray] premise of the data: appearance AUC 0.851 (static 0.857), colour AUC 0.476 "
        "(static null): FAILS (rule: the rule)"
    )
    assert premise_line(skipped, "[sweep]") == (
        "[sweep] premise of the data: not measured (split 'val' has no GT (the classifiers "
        "learn from it))"
    )
