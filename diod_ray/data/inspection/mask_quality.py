"""How good are motion masks? Recall of moving / static GT objects, spurious and merged segments.

Everything is computed per frame from one contingency table (``np.bincount`` over the joint
labels), never by looping over pixels.
"""

from __future__ import annotations

import numpy as np

MATCH_IOU = 0.5
# a GT object is "substantially" covered by a segment when the segment holds this share of it
MERGE_COVER = 0.3
# a segment is background noise when more than this share of its pixels is GT background
SPURIOUS_BG_SHARE = 0.5


class MaskQuality:
    """Accumulates motion-mask quality against GT over frames; ``summary()`` gives the figures.

    GT objects with fewer than ``min_gt_pixels`` visible pixels in a frame are ignored there
    (e.g. the data pipeline's ``data.min_mask_pixels``).
    """

    def __init__(self, min_gt_pixels: int = 1):
        self.min_gt_pixels = max(1, int(min_gt_pixels))
        self.frames = 0
        self.moving_objects = 0
        self.static_objects = 0
        self.moving_found = 0
        self.static_found = 0
        self.moving_iou_sum = 0.0
        self.segments = 0
        self.segments_matched = 0
        self.segments_matched_moving = 0
        self.segments_spurious = 0
        self.segments_merged = 0

    def update(self, gt: np.ndarray, moving: np.ndarray, motion: np.ndarray) -> None:
        """gt int [T,H,W] (0 = bg), moving bool [T,G+1], motion int [T,H,W] (0 = none)."""
        gt = np.asarray(gt)
        motion = np.asarray(motion)
        moving = np.asarray(moving, bool)
        if gt.shape != motion.shape or gt.ndim != 3:
            raise ValueError(
                f"MaskQuality: gt {gt.shape} and motion {motion.shape} must be [T,H,W]"
            )
        if moving.ndim != 2 or moving.shape[0] != gt.shape[0] or moving.shape[1] <= gt.max():
            raise ValueError(
                f"MaskQuality: moving {moving.shape} must be [T, G+1] with G >= {int(gt.max())}"
            )
        for t in range(gt.shape[0]):
            self._update_frame(gt[t].ravel(), moving[t], motion[t].ravel())

    def _update_frame(self, gt: np.ndarray, moving: np.ndarray, seg: np.ndarray) -> None:
        self.frames += 1
        n_gt = int(gt.max()) + 1
        n_seg = int(seg.max()) + 1
        joint = np.bincount(gt.astype(np.int64) * n_seg + seg, minlength=n_gt * n_seg)
        inter = joint.reshape(n_gt, n_seg)  # [G+1, S+1] pixel counts
        gt_area = inter.sum(1)
        seg_area = inter.sum(0)
        union = gt_area[:, None] + seg_area[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)[1:, 1:]  # [G, S]
        present = gt_area[1:] >= self.min_gt_pixels  # [G]
        best = iou.max(1) if n_seg > 1 else np.zeros(n_gt - 1)  # [G]
        mov = moving[1:n_gt] & present
        sta = ~moving[1:n_gt] & present
        self.moving_objects += int(mov.sum())
        self.static_objects += int(sta.sum())
        self.moving_found += int((best[mov] >= MATCH_IOU).sum())
        self.static_found += int((best[sta] >= MATCH_IOU).sum())
        self.moving_iou_sum += float(best[mov].sum())
        if n_seg == 1:
            return
        seg_inter = inter[1:, 1:]  # [G, S]
        matched = (iou >= MATCH_IOU).any(0) if n_gt > 1 else np.zeros(n_seg - 1, bool)
        matched_moving = (iou[mov] >= MATCH_IOU).any(0)  # [S] a moving object's match
        bg_share = inter[0, 1:] / np.maximum(seg_area[1:], 1)
        cover = seg_inter / np.maximum(gt_area[1:, None], 1)  # share of each object in segment
        merged = ((cover >= MERGE_COVER) & present[:, None]).sum(0) >= 2
        self.segments += n_seg - 1
        self.segments_matched += int(matched.sum())
        self.segments_matched_moving += int(matched_moving.sum())
        self.segments_spurious += int((~matched & (bg_share > SPURIOUS_BG_SHARE)).sum())
        self.segments_merged += int(merged.sum())

    def summary(self) -> dict:
        def ratio(a, b):
            return float(a / b) if b else float("nan")

        return {
            "frames": self.frames,
            "gt_moving_objects": self.moving_objects,
            "gt_static_objects": self.static_objects,
            "segments": self.segments,
            "moving_recall": ratio(self.moving_found, self.moving_objects),
            "static_recall": ratio(self.static_found, self.static_objects),
            "moving_mean_best_iou": ratio(self.moving_iou_sum, self.moving_objects),
            "segment_precision": ratio(self.segments_matched, self.segments),
            # share of segments matching a moving GT object (IoU >= MATCH_IOU): what burn-in
            # learns from is right this often
            "moving_segment_precision": ratio(self.segments_matched_moving, self.segments),
            "spurious_per_frame": ratio(self.segments_spurious, self.frames),
            "merged_share": ratio(self.segments_merged, self.segments),
        }
