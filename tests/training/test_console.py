"""The per-epoch console line and the Ray Data console filter."""

from __future__ import annotations

import logging
import os

import pytest

from diod_ray.training.console import (
    QUIET_CONFIG,
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
    monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG", raising=False)  # restored after the test
    monkeypatch.delenv("DIOD_RAY_DATA_CONSOLE", raising=False)
    import ray.data  # noqa: F401 - installs Ray Data's logging configuration

    handlers = logging.getLogger("ray.data").handlers

    def is_console(h):  # Ray's console handler (pytest may attach capture handlers beside it)
        return (
            isinstance(h, logging.StreamHandler)
            and not isinstance(h, logging.FileHandler)
            and type(h).__module__.startswith("ray.")
        )

    files = [h for h in handlers if not is_console(h)]
    file_levels = [h.level for h in files]
    quiet_ray_data_console()
    consoles = [h for h in handlers if is_console(h)]
    assert consoles and files, "ray.data should log to a console and a session file"
    assert all(h.level >= logging.WARNING for h in consoles)
    assert [h.level for h in files] == file_levels  # the log files keep everything
    from ray.data import DataContext

    assert DataContext.get_current().enable_progress_bars is False
    DataContext.get_current().enable_progress_bars = True  # leave the process as it was
    assert os.environ["RAY_DATA_LOGGING_CONFIG"] == QUIET_CONFIG


def test_quiet_logging_config_is_ray_datas_with_a_quiet_console():
    """The shipped YAML loads, keeps the file handler at DEBUG and the console at WARNING."""
    import yaml

    cfg = yaml.safe_load(open(QUIET_CONFIG))
    assert cfg["handlers"]["console"]["level"] == "WARNING"
    assert cfg["loggers"]["ray.data"]["level"] == "DEBUG"
    assert set(cfg["loggers"]["ray.data"]["handlers"]) == {"file", "console"}


def test_ray_train_path_named_logger_is_filtered_below_the_level():
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        quiet_ray_train_console("WARNING")
        ctx_logger = "/x/site-packages/ray/train/v2/_internal/execution/context.py"
        info = logging.LogRecord(ctx_logger, logging.INFO, __file__, 1, "Reporting ...", None, None)
        warn = logging.LogRecord(ctx_logger, logging.WARNING, __file__, 1, "bad", None, None)
        ours = logging.LogRecord("diod_ray", logging.INFO, __file__, 1, "epoch line", None, None)
        assert not handler.filter(info)
        assert handler.filter(warn) and handler.filter(ours)
    finally:
        root.removeHandler(handler)
