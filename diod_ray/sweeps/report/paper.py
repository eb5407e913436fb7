"""The paper's reference numbers (DIOD, CVPR 2024, Table 4; TRI-PD test set, F1@50 in %),
quoted beside our numbers in the sweep reports, and the row labels of the ablation tables."""

from __future__ import annotations

# (alpha, burn-in epochs) -> (F1 at end of burn-in, F1 after 500 distillation epochs)
PAPER_TABLE_4C = {
    (0.2, 200): (12.7, 29.3),
    (0.2, 300): (15.5, 26.2),
    (0.2, 400): (15.6, 23.6),
    (0.3, 200): (14.6, 30.7),
    (0.3, 300): (17.2, 33.9),
    (0.3, 400): (16.9, 35.4),
    (0.4, 200): (15.5, 32.7),
    (0.4, 300): (17.1, 33.5),
    (0.4, 400): (18.8, 33.7),
}
PAPER_TABLE_4A = {"one_to_one": 30.2, "no_motion_masks": 17.8, "final": 35.4}
PAPER_TABLE_4B = {"end_of_burn_in": 16.9, "offline": 26.3, "final": 35.4}

ABLATION_LABELS = {
    "one_to_one": "one-to-one connection",
    "no_motion_masks": "DIOD (w/o motion masks)",
    "final": "DIOD (final setting)",
    "end_of_burn_in": "end of burn-in",
    "offline": "offline pseudo-labelling",
    "more_burn_in": "more burn-in instead (control)",
}
