"""Object-discovery metrics (docs/metrics.md): per-batch contingency tables, ARI and F1@50 in
:mod:`.contingency`; the streaming, rank-mergeable dataset accumulator in :mod:`.accumulator`."""

from diod_ray.metrics.accumulator import MetricAccumulator
from diod_ray.metrics.contingency import (
    PROTOCOLS,
    REFERENCE_ARI_EPS,
    REFERENCE_CLIP_LEN,
    Tables,
    all_ari,
    clip_ari,
    contingency_tables,
    downsample_nearest,
    f1_at_50,
    fg_ari,
    frame_match,
    slot_labels,
)

__all__ = [
    "PROTOCOLS",
    "REFERENCE_ARI_EPS",
    "REFERENCE_CLIP_LEN",
    "MetricAccumulator",
    "Tables",
    "all_ari",
    "clip_ari",
    "contingency_tables",
    "downsample_nearest",
    "f1_at_50",
    "fg_ari",
    "frame_match",
    "slot_labels",
]
