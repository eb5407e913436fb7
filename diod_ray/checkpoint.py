"""Full training state on disk: student, teacher, optimiser, scaler, step, phase, RNG, config.

A checkpoint is a directory holding ``state.pt`` (one ``torch.save`` dict of tensors and plain
Python values, loadable with ``torch.load(weights_only=True)``: a checkpoint from someone else
cannot run code) and ``config.yaml`` (the run's configuration, human readable). The directory may
live on local disk or in object storage (any URI :mod:`diod_ray.storage` opens). No Ray here:
evaluation, prediction and the data tools read checkpoints without it;
:mod:`diod_ray.training.state` writes them in a run.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

if TYPE_CHECKING:
    from diod_ray.config import StorageConfig

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


def _read_bytes(uri: str, settings: StorageConfig | None = None) -> bytes:
    """Bytes of ``<uri>/state.pt`` (or of ``uri`` when it names the file), local or remote."""
    from diod_ray import storage

    try:
        fs, path = storage.filesystem_for(uri, settings)
        with storage.storage_errors(uri, what="opening the checkpoint"):
            if not storage.exists(fs, path):
                raise CheckpointError(f"checkpoint {uri!r}: {path} does not exist")
            if storage.is_dir(fs, path):
                path = f"{path.rstrip('/')}/{STATE_FILE}"
        return storage.read_bytes(fs, path, uri)
    except storage.StorageError as exc:
        raise CheckpointError(f"checkpoint {uri!r}: cannot read {STATE_FILE}: {exc}") from exc


def load_state(
    uri: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    settings: StorageConfig | None = None,
) -> dict[str, Any]:
    """Load a checkpoint directory (or its state.pt) with ``torch.load(weights_only=True)``;
    ``settings``: the config's ``storage:`` section (endpoint, region) for a remote one."""
    import io

    uri = str(uri)
    data = _read_bytes(uri, settings)
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
    if which == "teacher":
        # a run saves EMATeacher.state_dict(): {"model": weights, "ema", "num_updates", ...}
        if not isinstance(weights, dict) or "model" not in weights:
            raise CheckpointError(f"checkpoint {uri!r}: its 'teacher' entry has no 'model' weights")
        weights = weights["model"]
    model = build_model(cfg)
    model.load_state_dict(weights)
    return model.to(device).eval(), cfg
