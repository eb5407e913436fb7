"""Instance-id maps -> one-hot object masks on the attention grid (fully tensorised)."""

from __future__ import annotations

import torch
from torch import Tensor

# (frame, id) pairs are counted with one bincount when frames * (max id + 1) stays below this;
# larger id ranges fall back to a sort (torch.unique)
BINCOUNT_LIMIT = 1 << 24


def nearest_indices(size_in: int, size_out: int, device: torch.device) -> Tensor:
    """Source indices of ``F.interpolate(mode="nearest")``: floor(i * in / out), i < out."""
    scale = size_in / size_out
    idx = torch.floor(torch.arange(size_out, device=device, dtype=torch.float64) * scale)
    return idx.long().clamp_(max=size_in - 1)


def downsample_ids(ids: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """Nearest downsampling of integer id maps [..., H, W] -> [..., h, w] (exact for any int)."""
    h, w = grid_hw
    H, W = ids.shape[-2:]
    if (H, W) == (h, w):
        return ids
    if H % h == 0 and W % w == 0:  # integer factors: nearest = a strided view
        return ids[..., :: H // h, :: W // w]
    rows = nearest_indices(H, h, ids.device)
    cols = nearest_indices(W, w, ids.device)
    return ids[..., rows[:, None], cols]  # one gather: [..., h, w]


def object_channels(
    ids: Tensor, grid_hw: tuple[int, int], max_objects: int
) -> tuple[Tensor, Tensor]:
    """Per-pixel object channel on the grid and object counts, without building masks.

    ``ids`` int [B, T, H, W]. Returns ``channel`` long [B*T, h*w] (0..O-1 for object pixels in
    increasing id order per frame, O for background and objects beyond ``max_objects``) and
    ``counts`` long [B*T] (objects present at the grid, before the cut to O).
    """
    if ids.dim() != 4:
        raise ValueError(f"ids_to_masks: ids must be [B,T,H,W], got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"ids_to_masks: ids must be an integer tensor, got {ids.dtype}")
    if max_objects < 1:
        raise ValueError(f"ids_to_masks: max_objects must be >= 1, got {max_objects}")
    B, T = ids.shape[:2]
    N, n_max, dev = B * T, max_objects, ids.device
    small = downsample_ids(ids, grid_hw).reshape(N, -1).long()  # [N, P]
    if small.numel() == 0:
        return small, torch.zeros(N, dtype=torch.long, device=dev)
    lo, hi = torch.aminmax(small)
    if int(lo) < 0:
        raise ValueError("ids_to_masks: ids must be non-negative (0 = background)")
    span = int(hi) + 1
    frame = torch.arange(N, device=dev).unsqueeze(1)  # [N, 1]
    if N * span <= BINCOUNT_LIMIT:
        # presence of every (frame, id) pair, then the rank of each id among the frame's objects
        present = torch.bincount((frame * span + small).flatten(), minlength=N * span)
        present = present.reshape(N, span) > 0  # [N, span]
        present[:, 0] = False  # background is no object
        rank = present.long().cumsum(dim=1) - 1  # [N, span] object index of each id
        local = torch.where(present & (rank < n_max), rank, torch.full_like(rank, n_max))
        channel = local.gather(1, small)  # [N, P]
        counts = present.sum(dim=1)  # [N]
        return channel, counts
    # large id ranges: sort the (frame, id) keys instead
    uniq, inverse = torch.unique(frame * span + small, return_inverse=True)  # [U], [N, P]
    u_frame, u_id = uniq // span, uniq % span  # [U]
    first = torch.searchsorted(u_frame, torch.arange(N, device=dev))  # [N] first pair of frame
    rank = torch.arange(uniq.numel(), device=dev) - first[u_frame]  # [U] rank inside the frame
    has_bg = torch.zeros(N, dtype=torch.long, device=dev)
    has_bg.scatter_(0, u_frame[u_id == 0], 1)  # [N] the frame's background takes rank 0
    local = rank - has_bg[u_frame]  # [U] object index (background -> -1)
    local = torch.where((u_id == 0) | (local >= n_max), torch.full_like(local, n_max), local)
    counts = torch.zeros(N, dtype=torch.long, device=dev)
    counts.scatter_add_(0, u_frame, (u_id > 0).long())
    return local[inverse], counts


def channels_to_masks(channel: Tensor, num_channels: int) -> Tensor:
    """channel long [N, P] -> float32 one-hot [N, num_channels, P] (values >= num_channels drop)."""
    ch = torch.arange(num_channels, device=channel.device).view(1, -1, 1)
    return (channel.unsqueeze(1) == ch).float()


def ids_to_masks(ids: Tensor, grid_hw: tuple[int, int], max_objects: int) -> tuple[Tensor, Tensor]:
    """One-hot object masks on the attention grid.

    ``ids``: int [B, T, H, W] instance ids (0 = background, any non-negative ids). Each frame is
    downsampled to ``grid_hw`` with nearest sampling (like the reference's ``F.interpolate``), its
    ids present at the grid are remapped to 0..n-1 in increasing id order (the per-frame remap of
    the reference), background is dropped, and the frame is padded (or cut) to ``max_objects``.

    Returns ``masks`` float32 [B, T, O, h, w] and ``valid`` bool [B, T, O]; padded channels are
    all zero with ``valid`` False, valid channels form a prefix of O and are never empty.
    """
    channel, counts = object_channels(ids, grid_hw, max_objects)
    B, T = ids.shape[:2]
    h, w = grid_hw
    n_max = max_objects
    masks = channels_to_masks(channel, n_max)  # [N, O, P]
    valid = torch.arange(n_max, device=ids.device).unsqueeze(0) < counts.clamp(max=n_max).unsqueeze(
        1
    )
    return masks.reshape(B, T, n_max, h, w), valid.reshape(B, T, n_max)
