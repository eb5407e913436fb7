"""The per-epoch console line and the Ray Data console filter."""

from __future__ import annotations

import logging
import re

import pytest

from diod_ray.training.console import (
    EpochLine,
    format_duration,
    quiet_ray_data_console,
    quiet_ray_train_console,
)


def test_format_duration():
    assert format_duration(5) == "0:05"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "?"
    assert format_duration(float("nan")) == "?"


def test_epoch_line_has_what_a_person_needs():
    line = EpochLine("run-a", total_epochs=14, total_steps=448, start_step=0)
    t0 = line.t0
    text = line.format(
        phase="distill",
        epoch=9,
        step=288,
        avg={
            "loss/total": 0.912,
            "loss/recon": 0.061,
            "loss/teacher_bce": 0.38,
            "perf/clips_per_s": 9.84,
        },
        teacher={
            "teacher/kept_per_frame": 1.9,
            "teacher/frames_with_kept": 0.71,
            "teacher/kept_area": 0.062,
            "teacher/motion_kept_share": 0.84,
        },
        val_f1=0.312,
        now=t0 + 288.0,  # 1 s per step -> 160 steps left = 2:40
    )
    assert text.startswith("[run-a] distill epoch 9/14 step 288")
    assert "loss 0.912 (recon 0.061 teacher 0.38)" in text
    assert "9.8 clips/s" in text
    assert "teacher 1.90 kept/frame (6.2% of the frame each), 71% frames, motion kept 84%" in text
    assert "val F1@50 31.2" in text
    assert "4:48 elapsed, eta 2:40" in text
    assert "\n" not in text and len(text) < 250


def test_epoch_line_eta_counts_only_steps_of_this_process():
    line = EpochLine("r", total_epochs=4, total_steps=100, start_step=50)  # resumed at step 50
    assert line.eta_s(50, now=line.t0 + 10) is None
    assert line.eta_s(60, now=line.t0 + 10) == pytest.approx(40.0)  # 1 s/step, 40 steps left


def test_epoch_line_skips_missing_and_nan_values():
    line = EpochLine("r", total_epochs=2, total_steps=4, start_step=0)
    text = line.format(
        phase="burn-in", epoch=1, step=2, avg={"loss/total": float("nan")}, val_f1=None
    )
    assert "loss" not in text and "val" not in text and "teacher" not in text


def test_quiet_ray_data_console_keeps_file_logs(monkeypatch):
    monkeypatch.delenv("DIOD_RAY_DATA_CONSOLE", raising=False)
    import ray.data  # noqa: F401 - installs Ray Data's logging configuration
    from ray.data import DataContext

    handlers = logging.getLogger("ray.data").handlers

    def is_console(h):  # Ray's console handler (pytest may attach capture handlers beside it)
        return (
            isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler)
            and type(h).__module__.startswith("ray.")
        )

    files = [h for h in handlers if not is_console(h)]
    file_levels = [h.level for h in files]
    ctx = DataContext.get_current()
    before = (ctx.enable_progress_bars, ctx.print_on_execution_start)
    try:
        quiet_ray_data_console()
        consoles = [h for h in handlers if is_console(h)]
        assert consoles and files, "ray.data should log to a console and a session file"
        assert all(h.level >= logging.WARNING for h in consoles)
        assert [h.level for h in files] == file_levels  # the log files keep everything
        assert ctx.enable_progress_bars is False and ctx.print_on_execution_start is False
        # the one-time notice that progress bars are off does not reach the console
        notice = logging.LogRecord(
            "ray.data",
            logging.WARNING,
            __file__,
            1,
            "Progress bars disabled. To enable",
            None,
            None,
        )
        other = logging.LogRecord(
            "ray.data", logging.WARNING, __file__, 1, "a real one", None, None
        )
        assert not all(h.filter(notice) for h in consoles)
        assert all(h.filter(other) for h in consoles)
    finally:  # leave the process as it was
        ctx.enable_progress_bars, ctx.print_on_execution_start = before


def test_no_ray_private_logging_names_in_the_console_code():
    """Public settings only: no Ray-internal module or class named (issue 22)."""
    import inspect

    import diod_ray.training.console as console

    assert not re.search(r"_internal|_private", inspect.getsource(console))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ray_train_path_named_logger_is_quiet_in_a_worker_only(ray_session):
    """In a Ray actor (a Train worker) a logger named by a file path under ray/train, which
    Train's LoggingConfig does not reach, drops INFO; in-process (local mode) nothing changes."""
    path_named = "/x/site-packages/ray/train/v2/_internal/execution/context.py"

    @ray_session.remote(num_cpus=0)
    class Worker:
        def quiet(self, level):
            quiet_ray_train_console(level)
            return [
                logging.getLogger(path_named).isEnabledFor(lvl)
                for lvl in (logging.INFO, logging.WARNING)
            ]

    worker = Worker.remote()
    try:
        assert ray_session.get(worker.quiet.remote("WARNING")) == [False, True]
    finally:
        ray_session.kill(worker)
    root_level = logging.getLogger().level
    quiet_ray_train_console("WARNING")  # this process is no actor: left alone
    assert logging.getLogger().level == root_level
