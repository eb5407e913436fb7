"""Frames of any size into the model's input: resized, channel-ordered and normalised as the data
pipeline normalises its clips (used by ``python -m diod_ray.predict`` and the W_fg coverage of
``python -m diod_ray.data inspect --checkpoint``)."""

from __future__ import annotations

import numpy as np
import torch

from diod_ray.data.streaming.augment import resize_frames


def prepare_frames(frames: np.ndarray, height: int, width: int, colour_order: str) -> torch.Tensor:
    """uint8 RGB [N,H0,W0,3] -> float32 [N,3,height,width] normalised like the data pipeline
    ((x/255 - 0.5) / 0.5, see ``diod_ray.data.streaming.batches.normalise_frames``), channels in the
    configured order."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB frames [N,H,W,3], got {frames.dtype} {frames.shape}")
    if frames.shape[1:3] != (height, width):
        frames = resize_frames(frames, height, width, nearest=False)
    if colour_order == "bgr":
        frames = frames[..., ::-1]
    x = torch.from_numpy(np.ascontiguousarray(frames))
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
