"""Teacher object candidates (paper §3.3.2) and their confidence score (eq. 2).

All frames of a batch are processed at once on the attention maps' device: one argmax over the K
teacher slots, one batched connected-component labelling of the whole [N, h, w] slot map
(:mod:`diod_ray.objectives.components`), then per-region sizes and scores with segment sums. There
is no Python loop over frames, slots or regions.

Connection modes (``distill.connection``):

* ``one_to_many`` (paper default): every connected region of every teacher slot's argmax map is a
  candidate, so two separated instances captured by one teacher slot supervise two student slots.
* ``one_to_one`` (Table 4 (a) row 1): each teacher slot's whole argmax region is one candidate.

Regions with at most ``distill.min_region_pixels`` pixels are dropped; the others are scored with
eq. (2) and kept when ``score > distill.p``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from diod_ray.objectives.components import label_regions
from diod_ray.objectives.slot_argmax import slot_argmax

if TYPE_CHECKING:
    from diod_ray.config import DistillConfig


@dataclass
class Candidates:
    """Object candidates of N frames, padded to C = the largest number of candidates in a frame.

    Candidates of a frame are ordered kept-first (then raster order of their first pixel), so
    ``masks[:, :max_kept]`` holds every kept candidate.
    """

    index_map: Tensor  # [N, h, w] int64: candidate index c of each pixel, -1 where none
    scores: Tensor  # [N, C] float: confidence (eq. 2 with distill.score_source), 0 on padding
    valid: Tensor  # [N, C] bool: kept (score > p, size > min_region_pixels)
    present: Tensor  # [N, C] bool: a candidate (kept or not) exists at this index
    # [N, C] int64: the teacher slot of each candidate; -1 on padding and, under
    # quirk_first_component, for split-off parts of the background label
    slot: Tensor
    n_kept: int  # kept candidates in the batch
    n_dropped: int  # candidates above the size threshold but below the confidence threshold
    n_small: int  # regions at or under the size threshold (never candidates)

    @property
    def num_candidates(self) -> int:
        return int(self.scores.shape[1])

    @property
    def max_kept(self) -> int:
        """The largest number of kept candidates in one frame."""
        return int(self.valid.sum(1).max()) if self.valid.numel() else 0

    @property
    def masks(self) -> Tensor:
        """[N, C, h, w] float binary masks of every candidate (materialised on demand)."""
        return self.masks_upto(self.num_candidates)

    def kept_pixels(self) -> Tensor:
        """[N, h, w] bool: the pixel lies in a kept candidate."""
        n, h, w = self.index_map.shape
        c = self.max_kept
        idx = self.index_map.view(n, h * w)
        if c == 0:
            return torch.zeros(n, h, w, dtype=torch.bool, device=idx.device)
        # kept candidates come first in each frame, so index < max_kept covers them all
        kept_at = self.valid[:, :c].gather(1, idx.clamp(0, c - 1)) & (idx >= 0) & (idx < c)
        return kept_at.view(n, h, w)

    def kept_area_sum(self) -> float:
        """Sum over kept candidates of their share of the frame (divided by ``n_kept``: a kept
        candidate's mean area; objects are a few % of a frame, docs/teacher.md)."""
        n, h, w = self.index_map.shape
        return float(self.kept_pixels().sum()) / (h * w)

    def masks_upto(self, c: int) -> Tensor:
        """[N, c, h, w] float masks of the first c candidates (c = max_kept gives the kept ones)."""
        n, h, w = self.index_map.shape
        idx = self.index_map.view(n, 1, h * w)
        # one scatter instead of c comparisons: channel c collects "no candidate" and is cut off
        channel = torch.where((idx >= 0) & (idx < c), idx, torch.full_like(idx, c))
        out = torch.zeros(n, c + 1, h * w, device=idx.device)
        out.scatter_(1, channel, 1.0)
        return out[:, :c].view(n, c, h, w)


def candidate_score(masks: Tensor, source: Tensor, num: int | None = None) -> Tensor:
    """Eq. (2): score_c = sum_i W(i) c(i) / sum_i c(i), the mean of the source map W inside c.

    Two layouts of the same formula:

    * dense: ``masks`` float/bool [..., C, h, w] binary, ``source`` [..., C or 1, h, w]
      (e.g. motion masks [B, T, O, h, w] scored on W_fg [B, T, 1, h, w]) -> [..., C];
    * segments: ``masks`` int64 [P] segment id of each pixel (-1 = none) and ``source`` [P] with
      ``num`` segments -> [num] (the batched candidate path: one segment sum over all frames).

    Empty masks score 0.
    """
    if masks.dtype in (torch.int32, torch.int64):
        if num is None:
            raise ValueError("candidate_score on segment ids needs num (the number of segments)")
        ids = masks + 1  # bin 0 collects the pixels outside every segment
        # a 1-D scatter_add_, not bincount(weights=): CUDA has no deterministic weighted bincount,
        # which made distillation differ between two `run.deterministic` GPU runs (docs/performance.md
        # §6); on the CPU both sum in index order, bit for bit the same
        total = torch.zeros(num + 1, dtype=torch.float32, device=ids.device)
        total = total.scatter_add_(0, ids, source.to(torch.float32))[1:]
        count = torch.bincount(ids, minlength=num + 1)[1:]
        return total / count.clamp(min=1)
    c = masks.to(source.dtype)
    total = (c * source).sum(dim=(-2, -1))
    count = c.sum(dim=(-2, -1))
    return total / count.clamp(min=1)


def _slot_map(attn: Tensor, bg_index: int, quirk_slot0: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Argmax slot per pixel [N,h,w], its attention value [N,h,w], background pixels [N,h,w]."""
    value, slot = slot_argmax(attn)  # [N, h, w] each: one pass over the K maps
    background = slot == bg_index
    if quirk_slot0:
        # reference quirk: slot 0's label is 0 = the background label, so its region merges with it
        background = background | (slot == 0)
    return slot, value, background


def extract_candidates(attn: Tensor, fg: Tensor, d: DistillConfig, bg_index: int) -> Candidates:
    """Teacher object candidates of N frames (§3.3.2), scored with eq. (2) and filtered by p.

    attn: [N, K, h, w] teacher attention (softmax over slots); fg: [N, h, w] teacher W_fg;
    bg_index: the background slot (non-negative).

    Options (``d`` = ``cfg.distill``): ``connection``, ``connectivity``, ``min_region_pixels``,
    ``p``, ``score_source`` ("attention": the candidate's own teacher attention map, i.e. the
    argmax value, since every candidate pixel has its slot as argmax; "foreground": W_fg like the
    reference), and the two reference quirks (off by default):

    * ``quirk_slot0_background``: slot 0's region is merged with the background and never a
      candidate (except split-off parts under ``quirk_first_component``).
    * ``quirk_first_component`` (one-to-many only): per (frame, slot label), the first component in
      raster order keeps its label without a confidence test (for the merged background label it stays
      background), split-off components need score > p; then, as in the reference's loss, every
      candidate is filtered and weighted by its mean W_fg (kept iff >= p, score = mean W_fg).
    """
    if attn.dim() != 4 or fg.shape != (attn.shape[0], *attn.shape[2:]):
        raise ValueError(
            f"extract_candidates: attn must be [N, K, h, w] and fg [N, h, w]; "
            f"got {tuple(attn.shape)} and {tuple(fg.shape)}"
        )
    n, k, h, w = attn.shape
    if not 0 <= bg_index < k:
        raise ValueError(f"bg_index {bg_index} is not a slot index in 0..{k - 1}")
    slot, value, background = _slot_map(attn.detach(), bg_index, d.quirk_slot0_background)
    fg = fg.detach()
    regions = _regions(slot, background, k, d)
    score, is_candidate, keep = _score_and_keep(regions, fg, value, k, d)
    small = (regions.size <= d.min_region_pixels) & (regions.size > 0) & (regions.label >= 0)
    return _pack(regions, score, is_candidate, keep, int(small.sum()), (n, h, w))


@dataclass
class _Regions:
    """Step 1 of :func:`extract_candidates`: G regions over the N frames."""

    of_pixel: Tensor  # [N*h*w] int64 region id of each pixel, -1 outside every region
    num: int  # G
    frame: Tensor  # [G] the frame of each region
    size: Tensor  # [G] pixels
    label: Tensor  # [G] the teacher slot (-1 = the background label, first-component quirk)


def _regions(slot: Tensor, background: Tensor, k: int, d: DistillConfig) -> _Regions:
    """Regions of the slot map slot [N, h, w]: connected components of each slot's argmax region
    (``one_to_many``) or each (frame, slot) region whole (``one_to_one``); background pixels
    [N, h, w] are in none (under the first-component quirk, the background label is split too)."""
    n, device = slot.shape[0], slot.device
    if d.connection == "one_to_many":
        if d.quirk_first_component:
            # the reference also splits the background label (its label 0) into components
            label = torch.where(background, torch.full_like(slot, -1), slot)
            regions = label_regions(label, torch.ones_like(background), d.connectivity)
        else:
            label = slot
            regions = label_regions(slot, ~background, d.connectivity)
        return _Regions(
            of_pixel=regions.region_of_pixel(),  # [N*h*w], -1 outside
            num=int(regions.region_size.numel()),
            frame=regions.region_frame,
            size=regions.region_size,
            label=label.reshape(-1)[regions.region_first_pixel],  # [G] slot (-1 = background)
        )
    if d.connection == "one_to_one":
        # one region per (frame, slot): id = n * K + slot, background pixels in none
        frame = torch.arange(n, device=device).view(n, 1, 1)
        of_pixel = torch.where(background, -1, frame * k + slot).reshape(-1)
        num = n * k
        return _Regions(
            of_pixel=of_pixel,
            num=num,
            frame=torch.arange(num, device=device) // k,
            size=torch.bincount(of_pixel[of_pixel >= 0], minlength=num),
            label=torch.arange(num, device=device) % k,
        )
    raise ValueError(f"distill.connection must be one_to_many or one_to_one, got {d.connection!r}")


def _score_and_keep(
    r: _Regions, fg: Tensor, value: Tensor, k: int, d: DistillConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """Step 2: eq. (2) score of each region on fg or its own attention value (both [N, h, w]),
    the size filter and the p filter. Returns (score [G], is_candidate [G], keep [G])."""
    n, device = fg.shape[0], r.of_pixel.device
    source = fg if d.score_source == "foreground" else value
    score = candidate_score(r.of_pixel, source.reshape(-1), r.num)  # [G]
    big = r.size > d.min_region_pixels
    if not (d.quirk_first_component and d.connection == "one_to_many"):
        is_candidate = big & (r.label >= 0)
        return score, is_candidate, is_candidate & (score > d.p)
    # first component of each (frame, label) in raster order = smallest region id of that key
    ids = torch.arange(r.num, device=device)
    key = r.frame * (k + 1) + (r.label + 1)  # background label -1 -> 0
    first = torch.full((n * (k + 1),), r.num, dtype=torch.int64, device=device)
    first.scatter_reduce_(0, key, ids, reduce="amin")
    is_first = first[key] == ids
    is_candidate = big & ~(is_first & (r.label < 0))
    passes_extraction = is_first | (score > d.p)
    fg_score = (
        score
        if d.score_source == "foreground"
        else candidate_score(r.of_pixel, fg.reshape(-1), r.num)
    )
    # the reference then filters every pseudo-mask in the loss on the teacher's mean W_fg
    keep = is_candidate & passes_extraction & (fg_score >= d.p)
    return fg_score, is_candidate, keep


def _pack(
    r: _Regions,
    score: Tensor,
    is_candidate: Tensor,
    keep: Tensor,
    n_small: int,
    nhw: tuple[int, int, int],
) -> Candidates:
    """Step 3: candidates per frame, kept first, then raster order, padded to the most in a frame
    (``n_small``: the regions at or under the size threshold, counted by the caller)."""
    n, h, w = nhw
    device, num = r.of_pixel.device, r.num
    cand = torch.nonzero(is_candidate).squeeze(1)  # [G'] region ids, frame-major
    cand_frame = r.frame[cand]
    order = torch.argsort((cand_frame * 2 + (~keep[cand]).long()) * max(num, 1) + cand)
    cand = cand[order]
    cand_frame = cand_frame[order]
    per_frame = torch.bincount(cand_frame, minlength=n)  # [N]
    start = torch.cumsum(per_frame, 0) - per_frame
    position = torch.arange(cand.numel(), device=device) - start[cand_frame]  # index within frame
    c_max = int(per_frame.max()) if n else 0

    lut = torch.full((num + 1,), -1, dtype=torch.int64, device=device)  # region + 1 -> index
    lut[cand + 1] = position
    index_map = lut.index_select(0, r.of_pixel + 1).view(n, h, w)  # -1 = none

    scores = torch.zeros(n, c_max, dtype=torch.float32, device=device)
    valid = torch.zeros(n, c_max, dtype=torch.bool, device=device)
    present = torch.zeros(n, c_max, dtype=torch.bool, device=device)
    slots = torch.full((n, c_max), -1, dtype=torch.int64, device=device)
    scores[cand_frame, position] = score[cand].float()
    valid[cand_frame, position] = keep[cand]
    present[cand_frame, position] = True
    slots[cand_frame, position] = r.label[cand].long()

    n_kept = int(keep.sum())
    return Candidates(
        index_map=index_map,
        scores=scores,
        valid=valid,
        present=present,
        slot=slots,
        n_kept=n_kept,
        n_dropped=int(is_candidate.sum()) - n_kept,
        n_small=n_small,
    )
