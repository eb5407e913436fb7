"""Batched connected-component labelling in plain PyTorch (CPU or GPU, no Python loop over maps).

Used by the teacher pseudo-labels (paper §3.3.2, one-to-many connection): every connected region of
every teacher slot's argmax map is an object candidate.

Algorithm (run-based union-find, all steps are whole-batch tensor ops):

1. Horizontal runs. A run is a maximal horizontal segment of pixels with the same class in one row;
   a run starts where the class differs from the left neighbour (or at x = 0). ``cumsum`` over the
   flattened start flags numbers the runs in raster order over the whole batch.
2. Edges between runs of adjacent rows. Two vertically adjacent pixels with the same class join their
   runs; consecutive columns giving the same pair of runs are deduplicated, so there are about as many
   edges as runs. With 8-connectivity a diagonal edge is only needed where the lower run starts (or the
   upper run ends), otherwise a vertical edge already joins the two runs.
3. Union-find on runs: hook the larger root onto the smaller one (``scatter_reduce`` amin), then
   pointer-jump until every run points at its root; repeat until both ends of every edge share a root
   (early exit; typically a handful of rounds). Satisfied edges are dropped after each round.
4. Roots are the smallest run of each component, i.e. its first pixel in raster order, so numbering
   roots with a ``cumsum`` gives per-map labels 1..n in the same order as ``scipy.ndimage.label``.

Work on the pixel grid is a few elementwise passes and one gather; the iterative part runs on runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Regions:
    """Connected regions of a batch of class maps; region ids are global over the batch, raster order."""

    shape: tuple[int, int, int]  # (N, h, w)
    run_of_pixel: Tensor  # [N*h*w] int32: run index of each pixel
    run_region: Tensor  # [R] int32: global region id of each run, -1 for inactive runs
    region_frame: Tensor  # [G] int64: map index n of each region
    region_first_pixel: (
        Tensor  # [G] int64: flat index (n*h*w + y*w + x) of the region's first pixel
    )
    region_size: Tensor  # [G] int64: pixels per region
    num_regions: Tensor  # [N] int64: regions per map

    def region_of_pixel(self) -> Tensor:
        """[N*h*w] int32 global region id of each pixel, -1 outside active pixels."""
        return self.run_region.index_select(0, self.run_of_pixel)

    def pixel_labels(self) -> Tensor:
        """[N, h, w] int64 labels 1..num_regions[n] per map (raster order), 0 outside."""
        offset = torch.cumsum(self.num_regions, 0) - self.num_regions  # [N] regions before map n
        region = self.region_of_pixel().view(self.shape)
        local = region - offset.view(-1, 1, 1) + 1
        return torch.where(region >= 0, local, torch.zeros_like(local)).long()


def _runs(key: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Run starts [N,h,w] bool, run index per pixel [N*h*w], first flat pixel of each run [R]."""
    start = torch.ones_like(key, dtype=torch.bool)
    start[:, :, 1:] = key[:, :, 1:] != key[:, :, :-1]
    flat_start = start.reshape(-1)
    # int32 per-pixel ids: a bool -> int32 cumsum is several times faster than -> int64
    run_of_pixel = torch.cumsum(flat_start, 0, dtype=torch.int32) - 1  # [N*h*w]
    run_first = torch.nonzero(flat_start).squeeze(1)  # [R]
    return start, run_of_pixel, run_first


def _edges(key: Tensor, active: Tensor, start: Tensor, run: Tensor, connectivity: int) -> Tensor:
    """Pairs of runs [E, 2] (upper row, lower row) that touch and share a class."""
    n, h, w = key.shape
    flat_run = run.reshape(-1)
    up, down = key[:, :-1, :], key[:, 1:, :]
    act_down = active[:, 1:, :]
    start_up, start_down = start[:, :-1, :], start[:, 1:, :]
    # vertical: (y, x)-(y+1, x); keep the first column of each (run above, run below) pair.
    # Masks live on the full [N, h, w] grid (last row False) so that flat positions are pixels.
    same = torch.zeros_like(active)
    same[:, :-1, :] = (up == down) & act_down
    sel = same.clone()
    sel[:, :-1, 1:] &= ~(same[:, :-1, :-1] & ~start_up[:, :, 1:] & ~start_down[:, :, 1:])
    upper = [torch.nonzero(sel.view(-1)).squeeze(1)]  # flat pixel of the upper end
    lower = [upper[0] + w]
    if connectivity == 8:
        # diagonal (y, x)-(y+1, x+1): needed only where the lower run starts at x+1
        # (else (y+1, x) is in the lower run and the vertical edge at x joins them)
        diag = torch.zeros_like(active)
        diag[:, :-1, :-1] = (
            (up[:, :, :-1] == down[:, :, 1:]) & act_down[:, :, 1:] & start_down[:, :, 1:]
        )
        pos = torch.nonzero(diag.view(-1)).squeeze(1)
        upper.append(pos)
        lower.append(pos + w + 1)
        # anti-diagonal (y, x+1)-(y+1, x): needed only where the lower run ends at x
        anti = torch.zeros_like(active)
        anti[:, :-1, 1:] = (
            (up[:, :, 1:] == down[:, :, :-1]) & act_down[:, :, :-1] & start_down[:, :, 1:]
        )
        pos = torch.nonzero(anti.view(-1)).squeeze(1)
        upper.append(pos)
        lower.append(pos + w - 1)
    u = flat_run.index_select(0, torch.cat(upper))
    v = flat_run.index_select(0, torch.cat(lower))
    return torch.stack((u, v), 1)


def _union_find(num_runs: int, edges: Tensor) -> Tensor:
    """Root (smallest run index of its component) of every run, [R] int64."""
    parent = torch.arange(num_runs, device=edges.device)
    u, v = edges[:, 0], edges[:, 1]
    while u.numel() > 0:
        pu, pv = parent.index_select(0, u), parent.index_select(0, v)  # roots (fully compressed)
        differ = pu != pv
        if not bool(differ.any()):
            break
        u, v, pu, pv = u[differ], v[differ], pu[differ], pv[differ]
        # hook the larger root onto the smaller one: parent only ever decreases, so no cycles
        parent.scatter_reduce_(0, torch.maximum(pu, pv), torch.minimum(pu, pv), reduce="amin")
        while True:  # pointer jumping until every run points at a root
            grand = parent.index_select(0, parent)
            if torch.equal(grand, parent):
                break
            parent = grand
    return parent


def label_regions(classes: Tensor, active: Tensor, connectivity: int = 4) -> Regions:
    """Connected regions of equal class among ``active`` pixels, for a batch of maps.

    classes: [N, h, w] integer class per pixel; active: [N, h, w] bool (inactive pixels belong to no
    region and never connect anything). Two active pixels are connected when they are 4- or
    8-neighbours with the same class.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    if classes.dim() != 3 or active.shape != classes.shape:
        raise ValueError(
            f"classes and active must both be [N, h, w]; got {tuple(classes.shape)} "
            f"and {tuple(active.shape)}"
        )
    n, h, w = classes.shape
    if n * h * w >= 2**31:
        raise ValueError(f"label_regions: {n}x{h}x{w} pixels exceed int32 ids; split the batch")
    # inactive pixels get class -1 so that runs never mix active and inactive pixels
    key = torch.where(
        active, classes.to(torch.int32), torch.full_like(classes, -1, dtype=torch.int32)
    )
    start, run_of_pixel, run_first = _runs(key)
    run = run_of_pixel.view(n, h, w)
    edges = _edges(key, active, start, run, connectivity)
    num_runs = run_first.numel()
    root = _union_find(num_runs, edges)

    run_active = active.reshape(-1)[run_first]  # [R]
    is_root = (root == torch.arange(num_runs, device=root.device)) & run_active
    region_of_root = torch.cumsum(is_root, 0) - 1  # global region id at each root, raster order
    run_region = torch.where(run_active, region_of_root[root], torch.full_like(root, -1)).int()

    region_first_pixel = run_first[is_root]  # [G]
    region_frame = torch.div(region_first_pixel, h * w, rounding_mode="floor")
    run_length = torch.diff(run_first, append=run_first.new_tensor([n * h * w]))
    num_regions_total = region_first_pixel.numel()
    region_size = torch.zeros(num_regions_total, dtype=torch.int64, device=root.device)
    region_size.index_add_(0, run_region[run_active].long(), run_length[run_active])
    num_regions = torch.bincount(region_frame, minlength=n)
    return Regions(
        shape=(n, h, w),
        run_of_pixel=run_of_pixel,
        run_region=run_region,
        region_frame=region_frame,
        region_first_pixel=region_first_pixel,
        region_size=region_size,
        num_regions=num_regions,
    )


def connected_components(binary: Tensor, connectivity: int = 4) -> Tensor:
    """Label the connected components of a batch of binary maps.

    binary: [N, h, w] bool. Returns int64 [N, h, w]: 0 on False pixels, 1..n_i on the components of
    map i, numbered in raster order of their first pixel (the same labels as
    ``scipy.ndimage.label``; connectivity 4 = its default structure, 8 = a full 3x3 structure).
    Runs on ``binary``'s device.
    """
    if binary.dtype != torch.bool:
        raise TypeError(f"connected_components expects a bool tensor, got {binary.dtype}")
    zeros = torch.zeros(binary.shape, dtype=torch.int32, device=binary.device)
    return label_regions(zeros, binary, connectivity).pixel_labels()
