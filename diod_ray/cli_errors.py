"""One line for the project's own errors, a traceback for bugs: what every command's ``main``
wears (train, evaluate, predict, data, model, sweeps)::

    @command_line("train")
    def main(argv: list[str] | None = None) -> int: ...

A project error is an exception whose class is defined in the ``diod_ray`` package (ConfigError,
DataError and its storage / split / shard kinds, CheckpointError, the sweeps' PlanError,
SweepError, StoreError, CurveError, and :class:`UsageError` below): its message already names the
file, row, field or flag. ``main`` then prints ``diod_ray <command>: error: <message>`` on stderr
and returns 2. An error that a Ray Train worker or a Ray task raised comes back wrapped by Ray
(``WorkerGroupError.worker_failures``, ``ControllerError.controller_failure``,
``RayTaskError.cause``, or ``raise ... from``); it is unwrapped through those public attributes
first. Anything else (Python's or a library's own exception types) is a bug and keeps its
traceback. Imports nothing of the package, so every command may use it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator

EXIT_PROJECT_ERROR = 2  # as argparse exits on a bad flag
_MAX_DEPTH = 8  # wrappers followed before giving up (Ray nests at most a few)


class UsageError(ValueError):
    """A flag's value is refused before any work (an --out that exists, a size below 1); the
    message names the flag."""


def _defined_in_package(cls: type) -> bool:
    return cls.__module__ == "diod_ray" or cls.__module__.startswith("diod_ray.")


def _ray_wrapped(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions a Ray exception carries, through Ray's public attributes."""
    if not type(exc).__module__.startswith("ray."):
        return
    failures = getattr(exc, "worker_failures", None)  # ray.train.WorkerGroupError: rank -> error
    if isinstance(failures, dict):
        yield from failures.values()
    for name in ("controller_failure", "cause"):  # ray.train.ControllerError, RayTaskError
        inner = getattr(exc, name, None)
        if isinstance(inner, BaseException):
            yield inner
    if exc.__cause__ is not None:  # e.g. Ray Data's UserCodeException, raised from the error
        yield exc.__cause__


def project_error(exc: BaseException, depth: int = 0) -> BaseException | None:
    """``exc`` itself, or the project error a Ray exception wraps; None for a bug."""
    if depth > _MAX_DEPTH:
        return None
    if type(exc).__module__.startswith("ray."):
        # RayTaskError(SplitMissingError) is also a SplitMissingError, but its message is the
        # worker's whole traceback: take the cause's
        for inner in _ray_wrapped(exc):
            found = project_error(inner, depth + 1)
            if found is not None:
                return found
        return None
    if any(_defined_in_package(cls) for cls in type(exc).__mro__):
        return exc
    return None


def one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def report(command: str, exc: BaseException) -> int:
    """Print ``diod_ray <command>: error: <message>`` on stderr; return the exit status 2."""
    print(f"diod_ray {command}: error: {one_line(exc)}", file=sys.stderr, flush=True)
    return EXIT_PROJECT_ERROR


def command_line(command: str) -> Callable[[Callable[..., int | None]], Callable[..., int]]:
    """Decorate a command's ``main``: a project error becomes one line on stderr
    (``diod_ray <command>: error: ...``) and the return value 2; ``None`` returns 0."""

    def wrap(main: Callable[..., int | None]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                rc = main(*args, **kwargs)
            except Exception as exc:
                err = project_error(exc)
                if err is None:
                    raise  # a bug: the traceback says where
                return report(command, err)
            return 0 if rc is None else rc

        return run

    return wrap
