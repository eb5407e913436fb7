"""Ray Train's data config for the evaluation Datasets (:class:`EvalSplit`).

Evaluation Datasets (:func:`diod_ray.data.streaming.datasets.eval_dataset`) are split by Train
across the ranks, ``equal=False`` so no clip is dropped, in stored order: each clip is read and
decoded once per pass. Their blocks are exactly ``run.eval_batch_size`` clips, so every rank's
batches are the batches one process would see and the metric counters, summed over ranks, are
its.
"""

from __future__ import annotations

from typing import Any

import ray.train


class EvalSplit(ray.train.DataConfig):
    """Train's DataConfig for the eval datasets: each one split over the workers by
    ``streaming_split(equal=False)`` (``equal=True``, Train's default, drops up to W-1 clips to
    even the shares), with the workers' nodes as locality hints. The datasets run with
    ``preserve_order`` (set in their own DataContext), under which Ray Data ignores the hints
    and hands the blocks out in order to the rank with the fewest rows so far: the shares are a
    function of the block sizes, the same in every run. A single worker gets the dataset's own
    iterator: the same blocks in the same order, without a coordinator actor."""

    def __init__(self) -> None:
        super().__init__(datasets_to_split="all")

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        out: list[dict[str, Any]] = [{} for _ in range(world_size)]
        for name, ds in datasets.items():
            if ds.name is None:
                ds.set_name(name)
            if world_size == 1:
                # One rank reads everything: the dataset's own iterator runs in the worker, as
                # Train does for a dataset it does not split. streaming_split would start a
                # SplitCoordinator actor (a process importing the project, seconds on a small
                # machine) per dataset per run, to hand every block to the only reader.
                out[0][name] = ds.iterator()
                continue
            parts = ds.streaming_split(world_size, equal=False, locality_hints=worker_node_ids)
            for i, part in enumerate(parts):
                out[i][name] = part
        return out
