"""Training state: :class:`TrainState` (student, teacher, optimiser, scaler, step of one worker),
its restore (Ray Train's latest checkpoint, else ``run.init_from``), and its form on disk.

A checkpoint is a directory holding ``state.pt`` (one ``torch.save`` dict of tensors and plain
Python values, loadable with ``torch.load(weights_only=True)``: a checkpoint from someone else
cannot run code) and ``config.yaml`` (the run's configuration, human readable). The directory may
live on local disk or in S3 (``s3://bucket/prefix/...``).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import torch
import yaml

from diod_ray.config import Config, to_dict
from diod_ray.data.order import data_seed
from diod_ray.storage import run_uri, upload_directory
from diod_ray.teacher import build_teacher, unwrap
from diod_ray.training.schedule import BURN_IN, DISTILL

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or of another format; the message names the URI."""


# --------------------------------------------------------------------------------------------
# RNG state as plain tensors / lists (weights_only-safe)
# --------------------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states as tensors and lists."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (with a ``config`` mapping) into ``directory`` atomically per file.

    Each file is written under a temporary name and renamed into place when complete, so an
    interrupted save never leaves a truncated ``state.pt``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = dict(state)
    state.setdefault("format_version", FORMAT_VERSION)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, directory / STATE_FILE)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if "config" in state:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(state["config"], f, sort_keys=False)
        os.replace(tmp, directory / CONFIG_FILE)
    return directory


def _read_bytes(uri: str) -> bytes:
    """Bytes of ``<uri>/state.pt`` from local disk or S3 (:mod:`diod_ray.storage`)."""
    from diod_ray import storage

    if storage.is_s3(uri):
        try:
            return storage.read_uri(storage.join(uri, STATE_FILE))
        except storage.StorageError as exc:
            raise CheckpointError(f"checkpoint {uri!r}: cannot read {STATE_FILE}: {exc}") from exc
    path = Path(os.path.expanduser(uri))
    if path.is_dir():
        path = path / STATE_FILE
    if not path.exists():
        raise CheckpointError(f"checkpoint {uri!r}: {path} does not exist")
    return path.read_bytes()


def load_state(uri: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint directory (or its state.pt) with ``torch.load(weights_only=True)``."""
    import io

    uri = str(uri)
    data = _read_bytes(uri)
    try:
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle / zip errors: truncated or not a checkpoint
        raise CheckpointError(
            f"checkpoint {uri!r}: not a loadable diod_ray checkpoint "
            f"(torch.load with weights_only=True failed: {exc})"
        ) from exc
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"checkpoint {uri!r}: expected format_version {FORMAT_VERSION}, found {found!r}"
        )
    return state


def load_model(uri: str, which: str = "student", device: str | torch.device = "cpu"):
    """Build the model of a checkpoint's config and load its ``student`` or ``teacher`` weights.

    Returns ``(model in eval mode on device, Config)``.
    """
    from diod_ray.config import from_dict
    from diod_ray.model import build_model

    state = load_state(uri, map_location="cpu")
    cfg = from_dict(state["config"])
    weights = state.get(which)
    if weights is None:
        if which == "teacher" and state.get("student") is not None:
            raise CheckpointError(
                f"checkpoint {uri!r} has no teacher (saved during burn-in); use which='student'"
            )
        raise CheckpointError(f"checkpoint {uri!r} has no {which!r} weights")
    model = build_model(cfg)
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg


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
        params = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr)
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
        ts.load(load_state(ts.cfg.run.init_from), weights_only=ts.cfg.run.init_weights_only)
        # a branch is a new run: its own history starts here, burn-in metrics are re-measured
        ts.metrics = {}
        ts.resumed_from_step = -1
        return f"initialised from {ts.cfg.run.init_from} at step {ts.step}"
    return "fresh start"


def keep_burn_in_checkpoint(ts: TrainState, epoch: int | str) -> None:
    """A burn-in checkpoint kept for good at ``<run>/kept/burn_in_epoch_<E>`` (sweep branches), or
    with ``epoch="end"`` at :func:`burn_in_end_uri` (written at every switch to distillation, so
    ``run.num_to_keep`` never prunes the end-of-burn-in model)."""
    uri = f"{run_uri(ts.cfg)}/kept/burn_in_epoch_{epoch}"
    if epoch == "end":
        uri = burn_in_end_uri(ts.cfg)
    with tempfile.TemporaryDirectory(prefix="diod-kept-") as d:
        save_checkpoint(d, ts.to_state())
        upload_directory(d, uri, ts.cfg)


def burn_in_end_uri(cfg: Config) -> str:
    """Where the end-of-burn-in checkpoint of a run is kept: ``<run>/kept/burn_in_end``."""
    return f"{run_uri(cfg)}/kept/burn_in_end"
