"""What a person watching a run sees: one readable line per epoch, and no Ray Data noise.

Rank 0 prints one line per epoch (phase, epoch/total, losses, clips/s, the teacher's activity in
distillation, validation F1 when it was computed, elapsed and ETA); the warning for an epoch
whose teacher kept nothing is printed by the loop (training loop, ``epoch_teacher_summary``).
Ray Data logs every dataset
execution (its plan, progress) on the console of the process that runs it; public DataContext
settings and logging levels keep that off the console and in Ray's log files
(``<session>/logs/ray-data*.log``), see :func:`quiet_ray_data_console`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

# set to 1 to keep Ray Data's per-execution output on the console (debugging the pipeline)
VERBOSE_ENV = "DIOD_RAY_DATA_CONSOLE"

# the loss terms shown on the line, in this order, with their short names
_LOSS_NAMES = (
    ("recon", "recon"),
    ("motion_bce", "motion"),
    ("teacher_bce", "teacher"),
    ("fg_nll", "fg"),
)


class _DropProgressNotice(logging.Filter):
    """Ray Data's one-time note that progress bars are off (we turned them off on purpose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Progress bars disabled" not in record.getMessage()


def _is_ray_console(handler: logging.Handler) -> bool:
    """A console handler Ray installed (a StreamHandler subclass from a ``ray`` module); file
    handlers and handlers others attach (a test runner's capture) are not."""
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and type(handler).__module__.startswith("ray.")
    )


def quiet_ray_data_console() -> None:
    """Keep Ray Data's per-execution output off this process's console, with public settings.

    ``DataContext`` (public; a Dataset copies the context when it is created and carries it into
    every process that runs it, Train workers and tasks included, so this runs before any Dataset
    is built):

    - ``enable_progress_bars = False``: no tqdm bars, and where stdout is not a terminal (Ray
      workers, ``ray job logs``) no multi-line INFO "Running Dataset" progress blocks;
    - ``print_on_execution_start = False``: no "Starting execution" / "Execution plan of
      Dataset" INFO lines at the start of every execution.

    Python's logging API on the ``ray.data`` logger: Ray's console handler is raised to WARNING
    (other INFO records stay in Ray Data's session log file, ``ray-data.log``, which keeps its
    level) and drops Ray Data's one-time "Progress bars disabled" warning. No Ray class or
    module is named. ``DIOD_RAY_DATA_CONSOLE=1`` keeps Ray's defaults."""
    if os.environ.get(VERBOSE_ENV) == "1":
        return
    from ray.data import DataContext  # importing ray.data installs its logging configuration

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if not _is_ray_console(handler):
            continue
        if handler.level < logging.WARNING:
            handler.setLevel(logging.WARNING)
        if not any(isinstance(f, _DropProgressNotice) for f in handler.filters):
            handler.addFilter(_DropProgressNotice())


def quiet_ray_train_console(level_name: str) -> None:
    """In a Train worker: ``run.ray_train_log_level`` for every logger of the process that has no
    level of its own, not only the ``ray.train`` ones that Train's public
    ``RunConfig(logging_config=LoggingConfig(log_level=...))`` sets.

    Ray Train V2 logs its per-report "Reporting training result ..." line from a logger named by
    a module's file path rather than under ``ray.train``, so that setting does not reach it; such
    a logger takes the root logger's level. diod_ray itself prints (no logging), so raising the
    worker process's root level (public ``logging`` API) hides only other libraries' INFO lines.
    In-process runs (local mode, ``run.num_workers=0``: not a Ray actor) keep the caller's
    logging as it is."""
    import ray

    level = logging.getLevelName(level_name)
    if not isinstance(level, int) or level <= logging.INFO:
        return
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return
    root = logging.getLogger()
    if root.getEffectiveLevel() < level:
        root.setLevel(level)


def format_duration(seconds: float | None) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour); ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class EpochLine:
    """Builds the per-epoch console line; the ETA comes from the steps this process trained."""

    def __init__(self, run_name: str, total_epochs: int, total_steps: int, start_step: int):
        self.run_name = run_name
        self.total_epochs = total_epochs
        self.total_steps = total_steps
        self.start_step = start_step
        self.t0 = time.perf_counter()

    def eta_s(self, step: int, now: float | None = None) -> float | None:
        elapsed = (time.perf_counter() if now is None else now) - self.t0
        done = step - self.start_step
        if done <= 0:
            return None
        return elapsed / done * max(0, self.total_steps - step)

    def format(
        self,
        *,
        phase: str,
        epoch: int,
        step: int,
        avg: dict[str, float],
        teacher: dict[str, Any] | None = None,  # the epoch's ``teacher/*`` summary
        val_f1: float | None = None,
        now: float | None = None,
    ) -> str:
        """One line, for example::

        [diod-synthetic] distill epoch 9/14 step 288 | loss 0.912 (recon 0.061 motion 0.35
        teacher 0.38 fg 0.12) | 9.8 clips/s | teacher 1.90 kept/frame (6.2% of the frame each),
        71% frames, motion kept 84% | val F1@50 31.2 | 4:12 elapsed, eta 3:05
        """
        now = time.perf_counter() if now is None else now
        parts = [f"[{self.run_name}] {phase} epoch {epoch}/{self.total_epochs} step {step}"]
        total = _num(avg.get("loss/total"))
        if total is not None:
            terms = [
                f"{short} {v:.3g}"
                for key, short in _LOSS_NAMES
                if (v := _num(avg.get(f"loss/{key}"))) is not None
            ]
            parts.append(f"loss {total:.4g}" + (f" ({' '.join(terms)})" if terms else ""))
        speed = _num(avg.get("perf/clips_per_s"))
        if speed is not None:
            parts.append(f"{speed:.1f} clips/s")
        if teacher:
            bits = []
            if (v := _num(teacher.get("teacher/kept_per_frame"))) is not None:
                area = _num(teacher.get("teacher/kept_area"))
                each = f" ({100 * area:.1f}% of the frame each)" if area is not None else ""
                bits.append(f"{v:.2f} kept/frame{each}")
            if (v := _num(teacher.get("teacher/frames_with_kept"))) is not None:
                bits.append(f"{100 * v:.0f}% frames")
            if (v := _num(teacher.get("teacher/motion_kept_share"))) is not None:
                bits.append(f"motion kept {100 * v:.0f}%")
            if bits:
                parts.append("teacher " + ", ".join(bits))
        if (v := _num(val_f1)) is not None:
            parts.append(f"val F1@50 {100 * v:.1f}")  # metrics are fractions; shown in %
        parts.append(
            f"{format_duration(now - self.t0)} elapsed, eta {format_duration(self.eta_s(step, now))}"
        )
        return " | ".join(parts)
