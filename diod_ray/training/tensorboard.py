"""Rank 0's logging: step scalars averaged over ``run.log_every_steps`` into TensorBoard and Ray's
metrics (:mod:`diod_ray.training.telemetry`), training pictures, and the TensorBoard directory
kept next to the checkpoints (uploaded with each one for an S3 run)."""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from typing import Any

from diod_ray import storage
from diod_ray.config import Config
from diod_ray.training.schedule import BURN_IN


class Logger:
    """Averages step scalars and writes them to TensorBoard and Ray's metrics every N steps."""

    def __init__(self, cfg: Config, rank: int):
        self.cfg = cfg
        self.enabled = rank == 0
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0
        self.writer = None
        self.telemetry = None
        self.tb_dir = ""
        self.clips = 0
        self.t0 = time.perf_counter()
        self.data_wait = 0.0
        self.last: dict[str, float] = {}
        if not self.enabled:
            return
        if cfg.run.tensorboard:
            from tensorboardX import SummaryWriter

            self.tb_dir = tensorboard_local_dir(cfg)
            self.writer = SummaryWriter(self.tb_dir, flush_secs=30)
        from diod_ray.training.telemetry import Telemetry

        self.telemetry = Telemetry(cfg.run.name)

    def add(self, res, batch_clips: int, data_wait: float, lr: float, phase: str) -> None:
        if not self.enabled:
            return
        for k, v in res.terms.items():
            self.sums[f"loss/{k}"] += float(v)
        self.sums["loss/total"] += float(res.total.detach())
        for k, v in res.stats.items():
            self.sums[f"stats/{k}"] += float(v)
        self.sums["lr"] += lr
        self.count += 1
        self.clips += batch_clips
        self.data_wait += data_wait
        self.phase = phase

    def flush(self, step: int) -> dict[str, float]:
        if not self.enabled:
            return {}
        if self.count == 0:  # nothing new since the last flush: repeat its averages
            return self.last
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        avg = {k: v / self.count for k, v in self.sums.items()}
        avg["perf/clips_per_s"] = self.clips / elapsed
        avg["perf/data_wait_s"] = self.data_wait / self.count
        avg["phase"] = 0.0 if self.phase == BURN_IN else 1.0
        self._write(avg, step)
        if self.telemetry is not None:
            # stats that only exist in distillation stay unset (None) during burn-in
            self.telemetry.record(
                step=step,
                phase=avg["phase"],
                loss=avg.get("loss/total"),
                clips_per_s=avg["perf/clips_per_s"],
                data_wait_s=avg["perf/data_wait_s"],
                candidates_kept=_times(avg.get("stats/candidates_kept"), self.count),
                candidates_dropped=_times(avg.get("stats/candidates_dropped"), self.count),
                motion_kept_share=avg.get("stats/motion_kept_share"),
                teacher_student_agreement=avg.get("stats/teacher_student_agreement"),
            )
        self.last = avg
        self.sums.clear()
        self.count = 0
        self.clips = 0
        self.data_wait = 0.0
        self.t0 = time.perf_counter()
        return avg

    def image(self, step: int, batch, out, teacher_out, cfg: Config, bg: int) -> None:
        if self.writer is None:
            return
        from diod_ray.viz import training_panel

        img = training_panel(batch, out, teacher_out, bg)  # uint8 [H', W', 3]
        self.writer.add_image("slots", img, step, dataformats="HWC")

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._write(values, step)
        if self.writer is not None:
            self.writer.flush()

    def _write(self, values: dict[str, Any], step: int) -> None:
        """Finite numbers only: a metric that could not be computed (NaN, None) is left out of
        TensorBoard instead of drawn as a spike (and tensorboardX's NaN warning per value)."""
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def sync_tensorboard(self) -> None:
        """Flush the event files and, for an ``s3://`` run, upload the staging directory to
        ``<run>/tensorboard`` (every file; event files only grow, and each attempt of a restarted
        run writes a new one, so what a failed attempt logged stays in storage). A local run
        writes straight into its run directory. Called with every checkpoint and at the end."""
        if self.writer is None:
            return
        self.writer.flush()
        uri = storage.run_uri(self.cfg)
        if storage.is_s3(uri):
            storage.upload_directory(self.tb_dir, f"{uri}/tensorboard", self.cfg)


def _times(mean: float | None, count: int) -> float | None:
    return None if mean is None else mean * count


def tensorboard_local_dir(cfg: Config) -> str:
    """TensorBoard files go straight to the run directory when it is local, else to a local
    staging directory that is uploaded next to the checkpoints."""
    uri = storage.run_uri(cfg)
    if storage.is_s3(uri):
        return os.path.join(os.path.expanduser("~/.cache/diod_ray/tensorboard"), cfg.run.name)
    return os.path.join(uri, "tensorboard")
