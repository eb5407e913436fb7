"""Objectives: matching, burn-in losses (model engineer); pseudo-labels, distillation (distill)."""

from diod_ray.objectives.bce import normalise_objects, object_size_weight, weighted_bce
from diod_ray.objectives.burn_in import (
    FgBgLoss,
    burn_in_loss,
    fg_bg_loss,
    reconstruction_loss,
)
from diod_ray.objectives.masks import ids_to_masks
from diod_ray.objectives.matching import match_slots
from diod_ray.objectives.result import LossResult

__all__ = [
    "FgBgLoss",
    "LossResult",
    "burn_in_loss",
    "fg_bg_loss",
    "ids_to_masks",
    "match_slots",
    "normalise_objects",
    "object_size_weight",
    "reconstruction_loss",
    "weighted_bce",
]
