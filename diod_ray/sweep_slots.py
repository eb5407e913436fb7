"""At most N local-mode fits of a sweep stage at once, also when Tune restores the stage.

A local-mode trial (``run.num_workers=0``) trains in a 0-CPU task outside the trial's placement
group (see :mod:`diod_ray.sweep`), so Ray's resource accounting does not bound how many train at
once; ``TuneConfig(max_concurrent_trials=N)`` does, but only for trials the searcher creates: a
restored stage (``Tuner.restore(resume_errored=True)``) starts every unfinished trial at once
(seen on Ray 2.60: 9 fits on a 2-core machine). So the stage's driver also runs a named
:class:`TrialSlots` actor with N slots and each local-mode trial holds one while it fits.

A slot is a lease the trial renews while it waits on its fit; a trial whose process died without
releasing loses its slot after ``stale_after_s`` seconds without renewal.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ray

STALE_AFTER_S = 60.0
POLL_S = 2.0


@ray.remote(num_cpus=0)
class TrialSlots:
    """N slots, held by trial id; also a log of (time, trial id, "acquire" | "release")."""

    def __init__(self, capacity: int, stale_after_s: float = STALE_AFTER_S):
        if capacity < 1:
            raise ValueError(f"TrialSlots: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.stale_after_s = stale_after_s
        self.holders: dict[str, float] = {}  # trial id -> last renewal (monotonic seconds)
        self.log: list[tuple[float, str, str]] = []

    def acquire(self, trial_id: str) -> bool:
        now = time.monotonic()
        for t, seen in list(self.holders.items()):
            if now - seen > self.stale_after_s:
                del self.holders[t]
                self.log.append((time.time(), t, "expired"))
        if trial_id in self.holders or len(self.holders) < self.capacity:
            if trial_id not in self.holders:
                self.log.append((time.time(), trial_id, "acquire"))
            self.holders[trial_id] = now
            return True
        return False

    def renew(self, trial_id: str) -> None:
        if trial_id in self.holders:
            self.holders[trial_id] = time.monotonic()

    def release(self, trial_id: str) -> None:
        if self.holders.pop(trial_id, None) is not None:
            self.log.append((time.time(), trial_id, "release"))

    def history(self) -> list[tuple[float, str, str]]:
        return list(self.log)


def slots_name(runs_uri: str, stage: str) -> str:
    """The actor name of a sweep stage, from what every trial's config holds (``_sweep.runs``
    and ``_sweep.stage``): the same in every invocation, so restored trials find it."""
    key = f"{runs_uri}|{stage}".encode()
    return "diod-trial-slots-" + hashlib.sha1(key).hexdigest()[:16]


def start_slots(name: str, capacity: int):
    """The stage's slots actor (created, or the live one of that name); lives with the driver."""
    return TrialSlots.options(name=name, get_if_exists=True).remote(capacity)


def find_slots(name: str):
    """The named slots actor, or None (no driver runs one, e.g. a trial started by hand)."""
    try:
        return ray.get_actor(name)
    except ValueError:
        return None


def wait_for_slot(slots, trial_id: str) -> None:
    while not ray.get(slots.acquire.remote(trial_id)):
        time.sleep(POLL_S)


@contextmanager
def slot_held(
    runs_uri: str, stage: str, trial_id: str
) -> Iterator[tuple[float, Callable[[], None]]]:
    """Hold a slot of the stage's actor for the with-block, if a sweep driver runs one.

    Yields (seconds spent waiting for the slot, a heartbeat the block calls while it trains to
    keep the lease); the slot is released when the block ends, however it ends.
    """
    slots = find_slots(slots_name(runs_uri, stage))
    if slots is None:
        yield 0.0, lambda: None
        return
    start = time.monotonic()
    wait_for_slot(slots, trial_id)
    waited = time.monotonic() - start
    try:
        yield waited, lambda: slots.renew.remote(trial_id)
    finally:
        slots.release.remote(trial_id)
