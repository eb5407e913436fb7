"""The Optuna searcher of the threshold sweep (imported only by it: importing optuna is slow)."""

from __future__ import annotations

from typing import Any

from ray.tune.search.optuna import OptunaSearch


class FinalMetricOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, told only about the results that carry its metric.

    Ray's ``on_trial_result`` indexes every intermediate result with the metric (to feed Optuna's
    pruners) and raises ``KeyError`` on our per-epoch reports, which hold ``val/*`` but not
    ``final/*``: those are for ASHA. The last result still reaches ``on_trial_complete``; a trial
    ASHA stopped has no ``final/f1`` there, and Optuna records it as pruned.
    """

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if self.metric in result:
            super().on_trial_result(trial_id, result)
