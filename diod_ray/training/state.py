"""The training state of one worker: :class:`TrainState` (student, teacher, optimiser, scaler,
step), its restore (Ray Train's latest checkpoint, else ``run.init_from``), and the burn-in
checkpoints kept for good; the on-disk format is :mod:`diod_ray.checkpoint`."""

from __future__ import annotations

import tempfile
from typing import Any

import ray.train
import torch

from diod_ray.checkpoint import capture_rng, load_state, restore_rng, save_checkpoint
from diod_ray.config import Config, to_dict
from diod_ray.data.streaming.order import data_seed
from diod_ray.published import publish_directory, wait_for_marker
from diod_ray.storage import run_uri
from diod_ray.teacher import build_teacher, unwrap
from diod_ray.training.schedule import BURN_IN, DISTILL

__all__ = ["TrainState", "burn_in_end_uri", "keep_burn_in_checkpoint", "restore", "save_checkpoint"]


# ============================================================================================
# The state of one worker: build, restore, keep
# ============================================================================================


class TrainState:
    """Student, optional teacher, optimiser, scaler and counters of one worker."""

    def __init__(self, cfg: Config, device: torch.device):
        from diod_ray.model import build_model

        self.cfg = cfg
        self.device = device
        self.student = build_model(cfg).to(device)
        if device.type == "cuda" and cfg.run.channels_last:
            self.student = self.student.to(memory_format=torch.channels_last)
        self.optimizer = self._new_optimizer()
        use_scaler = device.type == "cuda" and cfg.run.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.teacher = None
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.resumed_from_step = -1

    # -- teacher ------------------------------------------------------------------------------
    def make_teacher(self) -> None:
        """Duplicate the student into the EMA teacher (end of burn-in, paper §3.3.1); frozen in
        offline pseudo-labelling mode."""
        self.teacher = build_teacher(self.student, self.cfg)

    def restart_optimizer(self) -> None:
        """A fresh Adam for the student (no first/second moments carried over): what the authors'
        code does by relaunching distillation as a new process. Called at
        :attr:`~diod_ray.training.schedule.Plan.restart_step` when
        ``optim.restart_optimizer_at_distill`` is set; the warm-up restart is a function of the
        step (``optim.restart_warmup_at_distill``, training/schedule.py)."""
        self.optimizer = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.student.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.cfg.optim.lr)

    # -- checkpoint ---------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "student": unwrap(self.student).state_dict(),
            "teacher": None if self.teacher is None else self.teacher.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "step": self.step,
            "phase": BURN_IN if self.teacher is None else DISTILL,
            "rng": capture_rng(),
            # the data stream is a function of (data seed, epoch, rank): the step fixes the
            # position, the seed is kept to check that a resume continues the same stream
            "data": {"seed": data_seed(self.cfg)},
            "config": to_dict(self.cfg),
            "metrics": dict(self.metrics),
        }

    def load(self, state: dict[str, Any], weights_only: bool = False) -> None:
        """Restore from a checkpoint state; ``weights_only`` keeps only the student weights."""
        unwrap(self.student).load_state_dict(state["student"])
        if weights_only:
            return
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.metrics = dict(state.get("metrics") or {})
        if state.get("teacher") is not None:
            self.make_teacher()
            self.teacher.load_state_dict(state["teacher"])
        if state.get("rng") is not None:
            restore_rng(state["rng"])
        saved_seed = (state.get("data") or {}).get("seed")
        if saved_seed is not None and saved_seed != data_seed(self.cfg):
            print(
                f"[diod_ray] warning: resuming with data seed {data_seed(self.cfg)} but the "
                f"checkpoint was trained with {saved_seed}: the rest of the run sees another "
                "data stream than the uninterrupted run would have"
            )
        self.resumed_from_step = self.step


def restore(ts: TrainState) -> str:
    """Resume from this run's latest checkpoint (Ray Train's, under ``(storage_path, name)``,
    whatever ``run.num_workers`` was), else start from ``run.init_from``. Local mode
    (``run.num_workers=0``, a unit-test tool) keeps checkpoints in memory only: no resume."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            ts.load(load_state(d))
        return f"resumed at step {ts.step}"
    if ts.cfg.run.init_from:
        ts.load(read_init_state(ts.cfg), weights_only=ts.cfg.run.init_weights_only)
        # a branch is a new run: its own history starts here, burn-in metrics are re-measured
        ts.metrics = {}
        ts.resumed_from_step = -1
        return f"initialised from {ts.cfg.run.init_from} at step {ts.step}"
    return "fresh start"


# kept checkpoints live in <run>/kept/<name>/ and are published under a completion marker
KEPT_DIR = "kept"
# how long a reader waits for a kept checkpoint's marker (a branch may start while rank 0 of the
# burn-in run is still copying it); then it fails naming the URI
KEPT_WAIT_S = 300.0


def keep_burn_in_checkpoint(ts: TrainState, epoch: int | str) -> str:
    """A burn-in checkpoint kept for good at ``<run>/kept/burn_in_epoch_<E>`` (sweep branches), or
    with ``epoch="end"`` at :func:`burn_in_end_uri` (written at every switch to distillation, so
    ``run.num_to_keep`` never prunes the end-of-burn-in model). Outside Train's checkpoint
    manager, so it is published like a split: files under a temporary prefix, moved into place,
    and a ``_COMPLETE`` marker (with the step) written last
    (:func:`diod_ray.published.publish_directory`); readers wait for the marker
    (:func:`read_kept_state`). Returns the URI."""
    uri = f"{run_uri(ts.cfg)}/{KEPT_DIR}/burn_in_epoch_{epoch}"
    if epoch == "end":
        uri = burn_in_end_uri(ts.cfg)
    with tempfile.TemporaryDirectory(prefix="diod-kept-") as d:
        save_checkpoint(d, ts.to_state())
        publish_directory(d, uri, {"step": ts.step, "epoch": epoch}, ts.cfg.storage)
    return uri


def burn_in_end_uri(cfg: Config) -> str:
    """Where the end-of-burn-in checkpoint of a run is kept: ``<run>/kept/burn_in_end``."""
    return f"{run_uri(cfg)}/{KEPT_DIR}/burn_in_end"


def is_kept(uri: str) -> bool:
    """True for a kept checkpoint's URI (``<run>/kept/<name>``), which has a marker to wait for."""
    parent = uri.rstrip("/").rsplit("/", 2)
    return len(parent) == 3 and parent[1] == KEPT_DIR


def read_kept_state(uri: str, cfg: Config, timeout_s: float = KEPT_WAIT_S) -> dict[str, Any]:
    """A kept checkpoint's state once it is published: waits up to ``timeout_s`` for its marker
    (never reads a half-written one) and raises a :class:`~diod_ray.errors.StorageError` naming
    the URI when it does not come."""
    wait_for_marker(uri, cfg.storage, timeout_s)
    return load_state(uri, settings=cfg.storage)


def read_init_state(cfg: Config, timeout_s: float = KEPT_WAIT_S) -> dict[str, Any]:
    """The state ``run.init_from`` names: a kept checkpoint once published, any other checkpoint
    (a Train checkpoint, another run's) as it is."""
    uri = cfg.run.init_from
    if is_kept(uri):
        return read_kept_state(uri, cfg, timeout_s)
    return load_state(uri, settings=cfg.storage)
