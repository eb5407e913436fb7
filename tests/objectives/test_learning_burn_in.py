"""Learning test: the smoke model, trained with the burn-in objective on ONE generated synthetic
clip and its optical-flow motion masks (diod_ray.data.motion, not ground truth), makes its
matched slots' argmax regions overlap those masks with IoU > 0.8."""

from __future__ import annotations

import numpy as np
import torch

from diod_ray.config import load_preset
from diod_ray.data.motion import motion_masks
from diod_ray.data.synthetic.render import generate_video
from diod_ray.model import build_model
from diod_ray.objectives.burn_in import burn_in_loss, foreground_slots, squash
from diod_ray.objectives.masks import ids_to_masks
from diod_ray.objectives.matching import match_slots

CLIP_INDEX = 7  # a camera-motion clip with 1-2 flow segments per frame at the smoke resolution
STEPS = 120


def matched_argmax_iou(attn: torch.Tensor, ids: torch.Tensor, bg_index: int, max_objects: int):
    """Mean IoU between each motion mask and the argmax region of its matched slot."""
    B, T, K, h, w = attn.shape
    masks, valid = ids_to_masks(ids, (h, w), max_objects)
    masks, valid = masks.flatten(0, 1).flatten(2), valid.flatten(0, 1)  # [N, O, P], [N, O]
    fg = foreground_slots(K, bg_index, attn.device)
    probs = squash(attn.flatten(0, 1).flatten(2), 0.999, 1e-8)[:, fg]  # [N, K-1, P]
    match = match_slots(probs, masks, valid)
    label = attn.flatten(0, 1).flatten(2).argmax(dim=1)  # [N, P]
    ious = []
    for n, o in zip(*torch.nonzero(match >= 0, as_tuple=True)):
        pred = label[n] == fg[match[n, o]]
        gt = masks[n, o] > 0
        ious.append(((pred & gt).sum() / (pred | gt).sum()).item())
    return float(np.mean(ious)), len(ious)


def test_smoke_model_fits_flow_motion_masks():
    cfg = load_preset("smoke")
    clip = generate_video(cfg.data.synthetic, cfg.data.height, cfg.data.width, "train", CLIP_INDEX)
    ids = motion_masks(clip.frames, cfg.data.flow, cfg.data.min_mask_pixels)
    assert ids.max() >= 1 and (ids.reshape(len(ids), -1).max(1) > 0).all()  # every frame has motion
    video = torch.from_numpy(clip.frames).float().div(255).sub(0.5).div(0.5)  # [T, H, W, 3]
    video = video.permute(0, 3, 1, 2).unsqueeze(0).contiguous()  # [1, T, 3, H, W]
    motion = torch.from_numpy(ids).long().unsqueeze(0)  # [1, T, H, W]

    threads = torch.get_num_threads()
    # one thread: this tiny model gains nothing from two, and a busy 2-core CI box makes
    # OpenMP barriers wait for time slices (25x slower steps measured, docs/perf/model.md)
    torch.set_num_threads(1)
    try:
        iou, before, n, first, last = _train(cfg, video, motion)
    finally:
        torch.set_num_threads(threads)
    assert n >= 3
    assert last < 0.5 * first
    assert before < 0.5, before
    assert iou > 0.8, (iou, before)


def _train(cfg, video, motion):
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.eval()
    with torch.no_grad():
        before, _ = matched_argmax_iou(model(video).attn, motion, model.bg_index, 6)
    model.train()
    first = last = None
    for _ in range(STEPS):
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
        first = first if first is not None else res.total.item()
        last = res.total.item()
    model.eval()
    with torch.no_grad():
        iou, n = matched_argmax_iou(model(video).attn, motion, model.bg_index, 6)
    return iou, before, n, first, last
