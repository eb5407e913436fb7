"""What a person watching a run sees: one readable line per epoch, and no Ray Data noise.

Rank 0 prints one line per epoch (phase, epoch/total, losses, clips/s, the teacher's activity in
distillation, validation F1 when it was computed, elapsed and ETA); the warning for an epoch
whose teacher kept nothing is printed by the loop (training loop, ``epoch_teacher_summary``).
Ray Data logs every dataset
execution as a multi-line INFO block on the console of the process that runs it; those blocks
stay in Ray's log files (``<session>/logs/ray-data*.log``) and leave the console, see
:func:`quiet_ray_data_console`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

# set to 1 to keep Ray Data's per-execution INFO blocks on the console (debugging the pipeline)
VERBOSE_ENV = "DIOD_RAY_DATA_CONSOLE"
# Ray Data's default logging configuration with the console at WARNING
QUIET_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_data_logging.yaml")

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


def quiet_ray_data_console() -> None:
    """Keep Ray Data's per-execution output off this process's console.

    Two sources: progress bars (tqdm bars forwarded from Ray workers, or, where stdout is not a
    terminal, multi-line INFO "progress" blocks), turned off with the public
    ``DataContext.enable_progress_bars`` (a Dataset copies the context when it is created, so this
    runs before any Dataset is built, in the driver and in each Train worker); and the INFO
    execution-plan lines of the ``ray.data`` logger, whose console handler is raised to WARNING.
    Ray Data's file handler (DEBUG, ``ray-data.log`` in the Ray session's log directory) is left as
    it is, so everything stays in the log files and the dashboard. A user who brings their own
    ``RAY_DATA_LOGGING_CONFIG``, or sets ``DIOD_RAY_DATA_CONSOLE=1``, keeps Ray's defaults."""
    if os.environ.get(VERBOSE_ENV) == "1" or (
        os.environ.get("RAY_DATA_LOGGING_CONFIG", QUIET_CONFIG) != QUIET_CONFIG
    ):
        return
    # Ray Data re-applies its logging configuration in some code paths (a task worker switching
    # dataset logs): pointing it at the quiet copy keeps the console at WARNING then too, and a
    # local cluster started after this call inherits the variable in every process
    os.environ["RAY_DATA_LOGGING_CONFIG"] = QUIET_CONFIG
    from ray.data import DataContext  # importing ray.data installs its logging configuration

    DataContext.get_current().enable_progress_bars = False
    for handler in logging.getLogger("ray.data").handlers:
        # Ray's console handler (a StreamHandler); its session file handler is a plain Handler,
        # and handlers others attach (a test runner's capture) are left alone
        is_console = (
            isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
            and type(handler).__module__.startswith("ray.")
        )
        if is_console and handler.level < logging.WARNING:
            handler.setLevel(logging.WARNING)
        if is_console and not any(isinstance(f, _DropProgressNotice) for f in handler.filters):
            handler.addFilter(_DropProgressNotice())


class _BelowLevelFromFileLogger(logging.Filter):
    """Drops records under ``level`` from Ray Train loggers named by a file path.

    Ray Train V2's ``RunConfig(logging_config=LoggingConfig(log_level=...))`` filters the
    ``ray.train`` loggers, but the per-report "Reporting training result ..." line comes from a
    logger named by its module's ``__file__`` (``.../ray/train/v2/_internal/execution/context.py``
    in Ray 2.60), which that filter does not see; this is the smallest workaround, one filter on
    the worker's console handlers, matched on the logger name only."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        from_train_file = record.name.endswith(".py") and "/ray/train/" in record.name
        return not (from_train_file and record.levelno < self.level)


def quiet_ray_train_console(level_name: str) -> None:
    """In a Train worker: apply ``run.ray_train_log_level`` also to Ray Train's path-named
    loggers (see :class:`_BelowLevelFromFileLogger`) on the console handlers."""
    level = logging.getLevelName(level_name)
    if not isinstance(level, int) or level <= logging.INFO:
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _BelowLevelFromFileLogger) for f in handler.filters):
            handler.addFilter(_BelowLevelFromFileLogger(level))


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
