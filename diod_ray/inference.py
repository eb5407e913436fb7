"""A trained model at inference, as a library (the command lines ``evaluate``, ``predict`` and
``data inspect --checkpoint`` are thin layers over it): :func:`load_for_inference` reads a
checkpoint's weights; :func:`evaluate_model` runs a model over batches of clips and returns every
metric (used by the training loop on each rank, by ``python -m diod_ray.evaluate`` and by the
benchmarks); :func:`predict_video` segments a whole video clip by clip (``python -m
diod_ray.predict``); :func:`fg_coverage` measures a checkpoint's W_fg on static vs moving GT
objects (``python -m diod_ray.data inspect --checkpoint``). No Ray and no CLI here: the caller
brings the batches.

Predictions are the argmax over all slots at the attention grid (background slot -> 0, slot k ->
k + 1); GT is downsampled to the grid by nearest, predictions are never upsampled (the reference's
protocol). The two protocols (docs/metrics.md):

- ``clean``: model in eval mode (BatchNorm running statistics); a stored clip is cut into clips of
  ``data.clip_len`` frames, each run from a fresh state, batched.
- ``reference``: clips of 5 frames (the reference's TRI-PD protocol), each run in its own forward
  pass with BatchNorm using the statistics of that clip, like the reference which never calls
  ``model.eval()``; the running statistics are NOT updated (momentum 0), so evaluating inside a
  training run leaves the model unchanged. The reference's ARI skip rules apply.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from diod_ray.config import Config
from diod_ray.metrics import (
    PROTOCOLS,
    REFERENCE_CLIP_LEN,
    MetricAccumulator,
    downsample_nearest,
    slot_labels,
)

ExampleSink = Callable[[str, np.ndarray], None]


@contextlib.contextmanager
def batchnorm_batch_statistics(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode except BatchNorm, which normalises with the statistics of the
    current batch (the reference's evaluation) without changing its running statistics."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.SyncBatchNorm) and torch.distributed.is_initialized():
            # train-mode SyncBatchNorm all-reduces: on one rank it would hang the evaluation
            raise ValueError(
                "protocol 'reference' needs per-clip BatchNorm statistics; this model has "
                "SyncBatchNorm in a distributed job: evaluate an unwrapped copy with plain "
                "BatchNorm, or use protocol 'clean'"
            )
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
    was_training = model.training
    model.eval()
    for m, _, _ in saved:
        m.train()
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
        model.train(was_training)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` for the block, the model's own mode restored after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _chunks(T: int, clip_len: int) -> list[slice]:
    """Non-overlapping windows of clip_len frames; a shorter tail is its own clip."""
    L = max(1, min(clip_len, T))
    return [slice(s, min(s + L, T)) for s in range(0, T, L)]


def evaluate_model(
    model: nn.Module,
    batches: Iterable[dict],
    cfg: Config,
    protocol: str = "clean",
    *,
    clip_len: int | None = None,
    max_examples: int = 0,
    example_sink: ExampleSink | None = None,
    slots_title: str = "student slots",
    all_reduce: bool = False,
) -> dict[str, Any]:
    """Metrics of ``model`` over ``batches`` (dicts from ``iter_eval_batches``: ``frames``
    [B,T,3,H,W] normalised, ``gt`` [B,T,H,W], optional ``gt_moving`` [B,T,G+1], ``motion``,
    ``clip_id``) under ``protocol``; returns ``MetricAccumulator.summary()`` plus timing.

    The model's train/eval mode and BatchNorm statistics are restored afterwards. With
    ``max_examples`` and ``example_sink``, the first clips' example grids (HWC uint8) are passed to
    ``example_sink(clip_id, image)``. With ``all_reduce`` (every rank of a DDP job evaluating its
    own share of the clips) the counters are summed over the ranks before the summary."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    core = getattr(model, "module", model)  # DDP-wrapped or not
    bg = int(core.bg_index)
    device = _device_of(model)
    reference = protocol == "reference"
    L = REFERENCE_CLIP_LEN if reference else (clip_len or cfg.data.clip_len)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and cfg.run.precision == "bf16"
        else contextlib.nullcontext()
    )
    mode = batchnorm_batch_statistics(model) if reference else eval_mode(model)
    acc = MetricAccumulator(protocol)
    n_examples = 0
    used_len = 0  # longest window actually run (a stored clip shorter than L is one window)
    t0 = time.perf_counter()
    with mode, torch.inference_mode(), autocast:
        for batch in batches:
            frames = batch["frames"].to(device, non_blocking=True)
            gt_full = batch["gt"].to(device, non_blocking=True)
            moving = batch.get("gt_moving")
            known = batch.get("moving_known")  # [B] bool: clips converted with moving flags
            B, T = frames.shape[:2]
            for win in _chunks(T, L):
                video = frames[:, win]
                used_len = max(used_len, video.shape[1])
                if reference:  # one clip per forward: BatchNorm sees the reference's batch
                    outs = [model(video[b : b + 1]) for b in range(B)]
                    attn = torch.cat([o.attn for o in outs])
                    fg = torch.cat([o.fg for o in outs])
                else:
                    out = model(video)
                    attn, fg = out.attn, out.fg
                pred = slot_labels(attn.float(), bg)  # [B,t,h,w]
                gt = downsample_nearest(gt_full[:, win], pred.shape[-2:])
                mv = moving[:, win].to(device) if moving is not None else None
                acc.update(gt, pred, mv, known)
                if example_sink is not None and n_examples < max_examples:
                    budget = max_examples - n_examples
                    n_examples += _emit_examples(
                        batch, win, pred, fg, cfg, example_sink, budget, slots_title
                    )
    seconds = time.perf_counter() - t0
    if all_reduce:
        acc = acc.all_reduce(device)
    out = acc.summary()
    out.update(
        {
            "clip_len": used_len or L,
            "batchnorm": "batch statistics" if reference else "running statistics",
            "seconds": round(seconds, 3),
            "frames_per_second": round(out["frames"] / seconds, 2) if seconds > 0 else None,
        }
    )
    return out


def _emit_examples(batch, win, pred, fg, cfg, sink, budget: int, slots_title: str) -> int:
    from diod_ray.viz import example_grid

    frames = batch["frames"][:, win].detach().float().cpu()
    if cfg.data.colour_order == "bgr":
        frames = frames.flip(2)  # back to RGB for the picture
    ids = batch.get("clip_id") or [str(i) for i in range(frames.shape[0])]
    n = min(budget, frames.shape[0])
    for b in range(n):
        img = example_grid(
            frames[b],
            gt=batch["gt"][b, win].cpu(),
            motion=batch["motion"][b, win].cpu() if "motion" in batch else None,
            slots=pred[b].cpu(),
            fg=fg[b].float().cpu(),
            slots_title=slots_title,
        )
        sink(f"{ids[b]}@{win.start}", img)
    return n


# --------------------------------------------------------------------------------------------
# Helpers shared by the CLIs (evaluate, predict) and the data tools
# --------------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but no CUDA device is available")
    return torch.device(name)


def load_for_inference(uri: str, weights: str | None, device: torch.device):
    """(model in eval mode, Config, which weights): ``weights`` or else the checkpoint's own
    ``run.eval_weights`` (student unless the run says teacher; read once in the common case)."""
    from diod_ray.checkpoint import load_model

    model, cfg = load_model(uri, which=weights or "student", device=device)
    which = weights or cfg.run.eval_weights
    if which != (weights or "student"):
        model, cfg = load_model(uri, which=which, device=device)
    return model, cfg, which


@torch.inference_mode()
def predict_video(
    model: torch.nn.Module,
    video: torch.Tensor,
    clip_len: int,
    carry_state: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot ids and W_fg of a whole video [N,3,H,W] (normalised), clip by clip.

    Returns (ids int64 [N,h,w] with background 0 and slot k -> k + 1, fg float32 [N,h,w]) on the CPU.
    With ``carry_state`` each clip starts from the previous clip's final slots and ConvGRU state."""
    if clip_len < 1:
        raise ValueError(f"clip length must be >= 1, got {clip_len}")
    device = next(model.parameters()).device
    bg = int(model.bg_index)
    ids, fgs = [], []
    state = None
    for s in range(0, video.shape[0], clip_len):
        clip = video[s : s + clip_len].unsqueeze(0).to(device)  # [1,t,3,H,W]
        out = model(clip, state=state if carry_state else None)
        state = out.state
        ids.append(slot_labels(out.attn.float(), bg)[0].cpu())  # [t,h,w]
        fgs.append(out.fg[0].float().cpu())
    return torch.cat(ids), torch.cat(fgs)


def fg_coverage(
    checkpoint: str,
    clips,
    *,
    weights: str | None = None,
    device: str = "cpu",
    batch_size: int = 8,
) -> dict:
    """W_fg coverage of a checkpoint's model over ``clips`` (an iterable of ``schema.Clip`` with
    GT and moving flags; others are skipped): :class:`diod_ray.data.inspection.fg_coverage.FgCoverage`'s
    summary plus the checkpoint and the weights. The model runs in eval mode (the ``clean``
    protocol) on windows of the checkpoint's ``data.clip_len`` frames, each from a fresh state."""
    from diod_ray.data.frames import prepare_frames
    from diod_ray.data.inspection.fg_coverage import FgCoverage

    model, cfg, which = load_for_inference(checkpoint, weights, torch.device(device))
    L = max(1, cfg.data.clip_len)
    acc = FgCoverage()
    pending: list = []

    def run(batch: list) -> None:
        # every clip of a split has the same T; windows of L frames, each from a fresh state
        x = torch.stack(
            [prepare_frames(c.frames, cfg.data.height, cfg.data.width, cfg.data.colour_order)
             for c in batch]
        ).to(device)  # [B,T,3,H,W]  # fmt: skip
        gt_full = torch.from_numpy(np.stack([c.gt for c in batch]).astype(np.int64))  # [B,T,H,W]
        T = x.shape[1]
        for s in range(0, T, L):
            win = slice(s, min(s + L, T))
            with torch.inference_mode():
                fg = model(x[:, win]).fg.float().cpu()  # [B,t,h,w]
            gt = downsample_nearest(gt_full[:, win], fg.shape[-2:]).numpy()
            for b, c in enumerate(batch):
                acc.update(fg[b].numpy(), gt[b], c.gt_moving[win])

    for clip in clips:
        if clip.gt is None or clip.gt_moving is None:
            continue
        pending.append(clip)
        if len(pending) == batch_size:
            run(pending)
            pending = []
    if pending:
        run(pending)
    return {"checkpoint": checkpoint, "weights": which, **acc.summary()}
