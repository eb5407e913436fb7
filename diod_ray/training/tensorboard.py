"""Rank 0's logging: step scalars averaged over ``run.log_every_steps`` into TensorBoard and Ray's
metrics (:mod:`diod_ray.training.telemetry`), training pictures, and the TensorBoard directory
kept next to the checkpoints (:class:`EventFiles`: for a remote run, each event file is uploaded
once, when it is closed at a checkpoint)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
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
        self.tb: EventFiles | None = None
        self.telemetry = None
        self.clips = 0
        self.t0 = time.perf_counter()
        self.data_wait = 0.0
        self.last: dict[str, float] = {}
        if not self.enabled:
            return
        if cfg.run.tensorboard:
            self.tb = EventFiles(storage.join(storage.run_uri(cfg), "tensorboard"), cfg)
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
        if self.tb is None:
            return
        from diod_ray.viz import training_panel

        img = training_panel(batch, out, teacher_out, bg)  # uint8 [H', W', 3]
        self.tb.writer.add_image("slots", img, step, dataformats="HWC")

    def scalars(self, values: dict[str, float], step: int) -> None:
        self._write(values, step)
        if self.tb is not None:
            self.tb.writer.flush()

    def _write(self, values: dict[str, Any], step: int) -> None:
        """Finite numbers only: a metric that could not be computed (NaN, None) is left out of
        TensorBoard instead of drawn as a spike (and tensorboardX's NaN warning per value)."""
        if self.tb is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.writer.add_scalar(k, v, step)

    def close(self) -> None:
        """Close the event file; a following :meth:`sync_tensorboard` uploads it."""
        if self.tb is not None:
            self.tb.close()

    def sync_tensorboard(self) -> None:
        """Make the events so far readable at ``<run>/tensorboard`` (:meth:`EventFiles.sync`).
        Called with every checkpoint and at the end."""
        if self.tb is not None:
            self.tb.sync()


def _times(mean: float | None, count: int) -> float | None:
    return None if mean is None else mean * count


class EventFiles:
    """A TensorBoard event directory at ``uri`` that is written incrementally.

    Local ``uri``: the writer writes straight into it; a sync flushes. Remote ``uri`` (object
    storage has no append): the writer writes into a local staging directory of this process, and
    each :meth:`sync` closes the current event file, uploads every closed file not uploaded yet
    (then deletes it locally) and opens a new one. Each byte is uploaded once, so the volume over
    N syncs grows with the events logged, not with N times the file. Files are named
    ``events.out.tfevents.<time>.<host>.<pid>.<n>``: TensorBoard reads all of a directory's files
    in name order, and each attempt of a restarted run adds its own, so what a failed attempt
    logged stays in storage."""

    def __init__(self, uri: str, cfg: Config) -> None:
        self.uri = uri
        self.settings = cfg.storage
        self.remote = not storage.is_local(uri)
        if self.remote:
            self.dir = tempfile.mkdtemp(prefix=f"diod-tb-{cfg.run.name}-")
        else:
            self.dir = storage.normalise_uri(uri)
            os.makedirs(self.dir, exist_ok=True)
        self.files_opened = 0
        self.bytes_uploaded = 0
        self.closed = False
        self.writer = self._open()

    def _open(self):
        from tensorboardX import SummaryWriter

        self.files_opened += 1
        suffix = f".{os.getpid()}.{self.files_opened:06d}"
        return SummaryWriter(self.dir, flush_secs=30, filename_suffix=suffix)

    def sync(self) -> int:
        """Flush (local) or close, upload the closed files and reopen (remote); returns the bytes
        uploaded by this call."""
        if not self.remote:
            if not self.closed:
                self.writer.flush()
            return 0
        if not os.path.isdir(self.dir):  # synced after close already
            return 0
        if not self.closed:
            self.writer.close()
        sent = 0
        for name in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, name)
            sent += storage.upload_file(path, storage.join(self.uri, name), self.settings)
            os.remove(path)
        self.bytes_uploaded += sent
        if self.closed:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            self.writer = self._open()
        return sent

    def close(self) -> None:
        """Close the writer for good; a remote directory's last file goes up with the next
        :meth:`sync`, which then also removes the staging directory."""
        self.writer.close()
        self.closed = True
