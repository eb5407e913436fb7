"""Every command turns the project's own errors into one line on stderr and exit status 2, also
when Ray hands them back wrapped; a bug keeps its traceback (diod_ray/cli_errors.py).

The commands run as the user runs them (``python -m ...`` subprocesses, all started at once), on
inputs that fail before Ray starts. The Ray wrappers are Ray's own exception classes, built as
Ray builds them (a Train worker's error in ``WorkerGroupError.worker_failures``, a task's in
``RayTaskError.cause``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from diod_ray.cli_errors import command_line, project_error
from diod_ray.config import ConfigError
from diod_ray.data.errors import ShardFormatError, SplitMissingError

REPO = Path(__file__).resolve().parents[2]


def _cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """id -> (argv after the interpreter, texts the one stderr line must hold)."""
    missing, ckpt = tmp / "missing", tmp / "no_checkpoint"
    return {
        "train-missing-split": (
            ["-m", "diod_ray.train", "--preset", "kitti", "--set", f"data.uri={missing}"],
            ["diod_ray train: error: ", f"{missing}/train/_manifest.json", "split 'train'"],
        ),
        "train-bad-key": (
            ["-m", "diod_ray.train", "--set", "model.nope=1"],
            ["diod_ray train: error: ", "'model.nope'"],
        ),
        "evaluate-missing-checkpoint": (
            ["-m", "diod_ray.evaluate", "--checkpoint", str(ckpt)],
            ["diod_ray evaluate: error: ", str(ckpt), "does not exist"],
        ),
        "predict-missing-checkpoint": (
            [
                "-m",
                "diod_ray.predict",
                str(tmp),
                "--checkpoint",
                str(ckpt),
                "--out",
                str(tmp / "o"),
            ],
            ["diod_ray predict: error: ", str(ckpt), "does not exist"],
        ),
        "data-missing-split": (
            ["-m", "diod_ray.data", "inspect", str(missing), "--split", "train"],
            ["diod_ray data: error: ", f"{missing}/train/_manifest.json"],
        ),
        "model-bad-value": (
            ["-m", "diod_ray.model", "--set", "model.num_slots=abc"],
            ["diod_ray model: error: ", "model.num_slots", "'abc'"],
        ),
        "sweeps-report-missing": (
            ["-m", "diod_ray.sweeps", "report", str(tmp / "no_sweep")],
            ["diod_ray sweeps report: error: ", f"{tmp}/no_sweep/sweep.json"],
        ),
        "sweeps-bad-plan": (
            ["-m", "diod_ray.sweeps", "alpha-burnin", "--dry-run", "--burn-in", "0"],
            ["diod_ray sweeps alpha-burnin: error: ", "--burn-in"],
        ),
        "sweeps-script-bad-plan": (
            [
                str(REPO / "sweeps" / "ablations.py"),
                "--dry-run",
                "--variants",
                "final",
                "--burn-in",
                "0",
            ],
            ["diod_ray sweeps ablations: error: ", "--burn-in"],
        ),
        "sweeps-burn-in-length-missing": (
            ["-m", "diod_ray.sweeps", "burn-in-length", str(tmp / "no_run")],
            ["diod_ray sweeps burn-in-length: error: ", f"{tmp}/no_run/summary.json"],
        ),
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every case's (exit status, stdout, stderr); the processes run side by side."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # a library's import-time warning is no error
    procs = {
        name: subprocess.Popen(
            [sys.executable, *argv],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (argv, _) in _cases(tmp).items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = (proc.returncode, stdout, stderr)
    return tmp, out


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", sorted(_cases(Path("/x"))))
def test_a_project_error_is_one_line_and_exit_2(runs, case):
    tmp, results = runs
    rc, stdout, stderr = results[case]
    expected = _cases(tmp)[case][1]
    assert rc == 2, stdout[-2000:] + stderr[-3000:]
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(expected[0]), lines[0]
    for text in expected[1:]:
        assert text in lines[0], (text, lines[0])


# ---------------------------------------------------------------------------------------------
# in process: Ray's wrappers are unwrapped, bugs are not caught
# ---------------------------------------------------------------------------------------------


def _main_raising(exc: BaseException):
    @command_line("test")
    def main(argv=None) -> int:
        raise exc

    return main


def _task_error(cause: BaseException):
    """What ``ray.get`` raises for a task that raised ``cause``: a RayTaskError that is also an
    instance of the cause's class, whose message is Ray's header and the task's traceback."""
    from ray.exceptions import RayTaskError

    err = RayTaskError(
        "read_task", "Traceback (most recent call last):\n  ...\n", cause, "proc", 1, "127.0.0.1"
    )
    return err.as_instanceof_cause()


def test_a_train_workers_error_comes_out_of_ray_as_one_line(capsys):
    from ray.train import ControllerError, WorkerGroupError

    missing = SplitMissingError("split 'train' does not exist", uri="/d", file="/d/train/m.json")
    wrapped = WorkerGroupError("[Rank 0 Error Snippet]: ...", {0: missing})
    assert _main_raising(wrapped)() == 2
    assert capsys.readouterr().err == f"diod_ray test: error: {missing}\n"

    bad = ConfigError("data.clip_len: expected >= 1")
    nested = ControllerError(_task_error(bad))
    assert project_error(nested) is bad
    assert _main_raising(nested)() == 2
    err = capsys.readouterr().err
    assert err == "diod_ray test: error: data.clip_len: expected >= 1\n"


def test_a_ray_task_error_shows_its_cause_not_the_traceback(capsys):
    from ray.exceptions import UserCodeException

    shard = ShardFormatError("clip 'c3': cannot decode", uri="/d", file="/d/test/part-0.parquet")
    task = _task_error(shard)
    # Ray's header (process, pid, ip) and the task's traceback, over several lines
    assert isinstance(task, ShardFormatError) and "pid=1" in str(task) and "\n" in str(task)
    assert _main_raising(task)() == 2
    assert capsys.readouterr().err == f"diod_ray test: error: {shard}\n"
    # Ray Data raises UserCodeException from the UDF's error
    try:
        raise UserCodeException("UDF failed") from shard
    except UserCodeException as exc:
        assert project_error(exc) is shard


def test_bugs_keep_their_traceback():
    from ray.train import WorkerGroupError

    with pytest.raises(KeyError):
        _main_raising(KeyError("x"))()
    with pytest.raises(WorkerGroupError):  # a worker's bug: Ray's error, with its traceback
        _main_raising(WorkerGroupError("...", {0: ZeroDivisionError("division by zero")}))()
    # a project error chained under a bug does not hide the bug
    try:
        raise TypeError("bad call") from ConfigError("x")
    except TypeError as exc:
        assert project_error(exc) is None


def test_a_message_over_several_lines_becomes_one(capsys):
    assert _main_raising(ConfigError("first part\n  second part"))() == 2
    assert capsys.readouterr().err == "diod_ray test: error: first part second part\n"
