"""What a person watching a run sees: one readable line per epoch, and no Ray Data noise.

Rank 0 prints one line per epoch (phase, epoch/total, losses, clips/s, the teacher's activity in
distillation, validation F1 when it was computed, elapsed and ETA). Ray Data logs every dataset
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

# the loss terms shown on the line, in this order, with their short names
_LOSS_NAMES = (
    ("recon", "recon"),
    ("motion", "motion"),
    ("fg_bg", "fg"),
    ("teacher", "teacher"),
)


def quiet_ray_data_console() -> None:
    """Raise the console handlers of the ``ray.data`` logger to WARNING in this process.

    Ray Data configures ``ray.data`` with a file handler (DEBUG, ``ray-data.log`` in the Ray
    session's log directory) and a console handler (INFO). Only the console handler changes, so
    the execution plans and progress blocks remain in the log files and the Ray dashboard. A user
    who brings their own ``RAY_DATA_LOGGING_CONFIG``, or sets ``DIOD_RAY_DATA_CONSOLE=1``, keeps
    what they configured."""
    if os.environ.get(VERBOSE_ENV) == "1" or os.environ.get("RAY_DATA_LOGGING_CONFIG"):
        return
    import ray.data  # noqa: F401 - importing ray.data installs its logging configuration

    for handler in logging.getLogger("ray.data").handlers:
        # the console is a StreamHandler; Ray Data's session file handler is a plain Handler
        is_console = isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        )
        if is_console and handler.level < logging.WARNING:
            handler.setLevel(logging.WARNING)


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
        teacher: dict[str, Any] | None = None,
        val_f1: float | None = None,
        now: float | None = None,
    ) -> str:
        """One line, for example::

        [diod-synthetic] distill epoch 9/14 step 288 | loss 0.912 (recon 0.061 motion 0.35
        fg 0.12 teacher 0.38) | 9.8 clips/s | teacher 1.9 cand/frame, 71% frames, motion kept
        84% | val F1 31.2 | 4:12 elapsed, eta 3:05
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
            if (v := _num(teacher.get("candidates_per_frame"))) is not None:
                bits.append(f"{v:.2f} cand/frame")
            if (v := _num(teacher.get("frames_with_candidate"))) is not None:
                bits.append(f"{100 * v:.0f}% frames")
            if (v := _num(teacher.get("motion_kept_share"))) is not None:
                bits.append(f"motion kept {100 * v:.0f}%")
            if bits:
                parts.append("teacher " + ", ".join(bits))
        if (v := _num(val_f1)) is not None:
            parts.append(f"val F1@50 {100 * v:.1f}")  # metrics are fractions; shown in %
        parts.append(
            f"{format_duration(now - self.t0)} elapsed, eta {format_duration(self.eta_s(step, now))}"
        )
        return " | ".join(parts)


def no_candidate_warning(run_name: str, epoch: int, p: float) -> str:
    """The one plain warning for a distillation epoch whose teacher kept no candidate."""
    return (
        f"[{run_name}] WARNING: distillation epoch {epoch} kept no teacher candidate "
        f"(distill.p={p}); the teacher term of eq. 5 was zero all epoch, so this epoch trained "
        "on the filtered motion masks only. See docs/results.md, 'Teacher defaults'."
    )
