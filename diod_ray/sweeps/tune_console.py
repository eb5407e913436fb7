"""What a person watching a sweep sees of Ray Tune: nothing but the trial errors.

The sweep's console is its own ``[sweep]`` lines (:class:`~diod_ray.sweeps.driver.TrialLines`,
the stage lines of :func:`~diod_ray.sweeps.driver.run_stage` and the command) and the trials' one
line per epoch. While a stage runs, :func:`tune_console` turns off what Ray Tune 2.60 prints
besides: its experiment box and result-path hints (a documented environment variable), and the
log records that the ``[sweep]`` lines replace (a filter on four public loggers, by message). A
trial's error is still logged by Tune with its traceback, and the trial's ``[sweep]`` line names
the traceback file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

# Ray 2.60 documents RAY_AIR_NEW_OUTPUT=0 (Tune's environment variables): Tune's older console
# engine, which prints nothing at RunConfig(verbose=0). The newer one, the default, prints a
# "Configuration for experiment" box, "View detailed results here" and a TensorBoard hint that
# points at Tune's driver artifacts, whatever the verbosity. A value the user set wins.
TUNE_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"

# what Tune logs that the [sweep] lines say better, by the public logger that logs it (a
# logger's filter sees the records logged on it; the others, trial errors included, pass)
_TUNE_LOGGERS = (
    "ray.tune.tune",  # tune.run, which Tuner.fit runs
    "ray.tune.analysis.experiment_analysis",  # tune.ExperimentAnalysis
    "ray.tune.utils.util",  # tune.utils.warn_if_slow, around the steps of Tune's own loop
    "ray.tune.execution.tune_controller",  # Tune's loop (its trial errors pass)
)


class _TuneConsole(logging.Filter):
    """Drops Tune's records that the sweep's own lines replace or that mislead its user:

    - "Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run ..." becomes one
      [sweep] line (the sweep is saved; the same command resumes it);
    - "Wrote the latest version of all result files and experiment state to ..." (INFO, every
      stage) and "Restoring the run from the latest experiment state file: ..." (INFO; the
      [sweep] line says the stage resumes);
    - "Experiment has been interrupted ... Resume experiment with: Tuner.restore(...)": the
      user resumes by running the same command, which the [sweep] line after the stage says;
    - "Trials did not complete: [...]" after a stop signal, when it lists the trials stopped on
      purpose (after a trial failed without one, it stays, next to the trial's error);
    - "Tune detects GPUs, but no trials are using GPUs": a trial's driver holds no GPU by
      design, its Train workers do (their placement group, not the trial's resources);
    - "Failed to fetch metrics for N trial(s) ... result.json and progress.csv were not found"
      from ``tune.ExperimentAnalysis``: a trial that never reported (it had not started when the
      stage was stopped, or failed first, which its error says) has no result files; the sweep
      reads only the trials' states from it;
    - "The `on_step_begin` operation took 1.370 s, which may be a performance bottleneck."
      (``warn_if_slow``): Tune's own loop was slow for a moment on a busy machine; the sweep's
      user cannot act on it.
    """

    announced = False  # a [sweep] line already said why the sweep stops (stop_announced)

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg.startswith("Stop signal received"):
            self.stopped = True
            if not _TuneConsole.announced:
                print(
                    "[sweep] stop signal received: stopping the running trials and saving the "
                    "sweep's state (Ctrl+C again skips saving); run the same command to resume",
                    flush=True,
                )
            return False
        if msg.startswith("Trials did not complete"):
            return not self.stopped
        if msg.endswith("which may be a performance bottleneck."):
            return False
        return not msg.startswith(
            (
                "Wrote the latest version of all result files",
                "Restoring the run from the latest experiment state file",
                "Experiment has been interrupted",
                "Training has been interrupted",
                "Tune detects GPUs, but no trials are using GPUs",
                "Failed to fetch metrics for",
            )
        )


@contextlib.contextmanager
def tune_console() -> Iterator[None]:
    """While a stage runs: Tune's older console engine (silent at ``verbose=0``) unless the user
    chose one with ``RAY_AIR_NEW_OUTPUT``, and :class:`_TuneConsole` on the loggers of
    ``tune.run``, ``tune.ExperimentAnalysis``, ``warn_if_slow`` and Tune's loop. Restores both
    afterwards (a test or a library caller keeps its own settings)."""
    chosen = TUNE_OUTPUT_ENV in os.environ
    if not chosen:
        os.environ[TUNE_OUTPUT_ENV] = "0"
    console = _TuneConsole()
    loggers = [logging.getLogger(name) for name in _TUNE_LOGGERS]
    for lg in loggers:
        lg.addFilter(console)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(console)
        _TuneConsole.announced = False
        if not chosen:
            os.environ.pop(TUNE_OUTPUT_ENV, None)


def stop_announced() -> None:
    """The sweep stops itself (``--stop-after-trials``) and has said so: the stop signal it sends
    does not print a second ``[sweep]`` line."""
    _TuneConsole.announced = True
