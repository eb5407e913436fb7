"""Pictures of the slots: overlays, example grids and contact sheets as HWC uint8 RGB arrays.

numpy + OpenCV only. Used by ``diod_ray.predict`` (overlay video, contact sheet), by
``diod_ray.evaluate --save-examples`` (PNG grids) and by the training loop (TensorBoard images,
which take HWC uint8 with ``dataformats="HWC"``).

Conventions: frames are uint8 RGB [T,H,W,3], or float [T,3,H,W] / [T,H,W,3] normalised like the
data pipeline ((x - 0.5) / 0.5) unless ``normalised=False`` (then in [0, 1]); label maps are
integer [T,h,w] (0 = background, drawn transparent) at any resolution (nearest-upsampled to the
frames); foreground maps are float [T,h,w] in [0, 1] (bilinear-upsampled, viridis colours).
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import torch

# 20 hand-picked distinct colours (RGB) first, then golden-angle hues for larger ids.
_BASE_COLOURS = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
]


def palette(n: int = 256) -> np.ndarray:
    """A fixed palette uint8 [n,3]: row 0 black (background), rows 1.. distinct colours."""
    cols = [(0, 0, 0)] + list(_BASE_COLOURS)
    i = 0
    while len(cols) < n:
        h = (i * 0.618033988749895) % 1.0
        s = 0.55 + 0.45 * ((i * 7) % 3) / 2
        v = 0.95 - 0.3 * ((i * 5) % 2)
        cols.append(tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)))
        i += 1
    return np.asarray(cols[:n], dtype=np.uint8)


_PALETTE = palette(1024)


def colourise(labels: np.ndarray) -> np.ndarray:
    """Integer labels [...] -> RGB uint8 [...,3]; ids beyond the palette wrap around (never to 0)."""
    labels = np.asarray(labels).astype(np.int64)
    idx = np.where(labels > 0, (labels - 1) % (len(_PALETTE) - 1) + 1, 0)
    return _PALETTE[idx]


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def to_uint8_frames(frames, normalised: bool = True) -> np.ndarray:
    """Frames -> uint8 RGB [T,H,W,3] (a single frame [H,W,3] / [3,H,W] gives [1,H,W,3])."""
    f = _to_numpy(frames)
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4:
        raise ValueError(f"frames must be [T,H,W,3] or [T,3,H,W], got shape {f.shape}")
    if f.shape[-1] != 3 and f.shape[1] == 3:
        f = f.transpose(0, 2, 3, 1)
    if f.shape[-1] != 3:
        raise ValueError(f"frames must have 3 colour channels, got shape {f.shape}")
    if f.dtype == np.uint8:
        return np.ascontiguousarray(f)
    f = f.astype(np.float32)
    if normalised:
        f = f * 0.5 + 0.5
    return np.ascontiguousarray(np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _labels(labels, t: int) -> np.ndarray:
    lab = _to_numpy(labels)
    if lab.ndim == 2:
        lab = lab[None]
    if lab.ndim != 3:
        raise ValueError(f"label maps must be [T,h,w], got shape {lab.shape}")
    if lab.shape[0] != t:
        raise ValueError(f"{lab.shape[0]} label maps for {t} frames")
    return lab.astype(np.int64)


def _resize_nearest(lab: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """[T,h,w] int -> [T,H,W] with the same nearest rule as diod_ray.metrics.downsample_nearest."""
    H, W = hw
    h, w = lab.shape[-2:]
    if (h, w) == (H, W):
        return lab
    rows = (np.arange(H) * h) // H
    cols = (np.arange(W) * w) // W
    return lab[:, rows][:, :, cols]


def label_image(labels, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Label maps [T,h,w] -> coloured uint8 [T,H,W,3] (background black)."""
    lab = _to_numpy(labels).astype(np.int64)
    if lab.ndim == 2:
        lab = lab[None]
    if hw is not None:
        lab = _resize_nearest(lab, hw)
    return colourise(lab)


def slot_overlay(
    frames,
    labels,
    alpha: float = 0.55,
    contours: bool = True,
    normalised: bool = True,
) -> np.ndarray:
    """Each non-zero id painted in its palette colour over the frames; background transparent.

    frames [T,H,W,3] / [T,3,H,W] (or one frame), labels [T,h,w] at any resolution. Returns uint8
    [T,H,W,3] ([H,W,3] when a single frame [H,W,3] was given)."""
    single = _to_numpy(frames).ndim == 3
    img = to_uint8_frames(frames, normalised)
    T, H, W, _ = img.shape
    lab = _resize_nearest(_labels(labels, T), (H, W))
    col = colourise(lab).astype(np.float32)
    fg = (lab > 0)[..., None]
    out = np.where(fg, (1 - alpha) * img + alpha * col, img.astype(np.float32))
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if contours:
        # a pixel is on a boundary when its right or lower neighbour has another id
        edge = np.zeros(lab.shape, dtype=bool)
        edge[:, :, :-1] |= lab[:, :, :-1] != lab[:, :, 1:]
        edge[:, :-1, :] |= lab[:, :-1, :] != lab[:, 1:, :]
        edge &= lab > 0
        out[edge] = colourise(lab[edge])
    return out[0] if single else out


def heat_image(values, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Float maps [T,h,w] in [0,1] (e.g. W_fg) -> viridis uint8 [T,H,W,3]."""
    v = _to_numpy(values).astype(np.float32)
    if v.ndim == 2:
        v = v[None]
    out = []
    for m in v:
        if hw is not None and m.shape != tuple(hw):
            m = cv2.resize(m, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
        u8 = np.clip(m * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out.append(cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB))
    return np.stack(out)


def _title_band(text: str, width: int, height: int) -> np.ndarray:
    band = np.full((height, width, 3), 255, dtype=np.uint8)
    scale = max(0.3, height / 40)
    cv2.putText(
        band,
        text,
        (3, int(height * 0.72)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    return band


def example_grid(
    frames,
    motion=None,
    pseudo=None,
    slots=None,
    fg=None,
    gt=None,
    normalised: bool = True,
    titles: bool = True,
    pad: int = 2,
    slots_title: str = "student slots",
) -> np.ndarray:
    """One picture of a clip: a row per kind, a column per frame. uint8 [H',W',3] RGB.

    Rows (those given, in this order): input frames, GT instances, motion masks, teacher
    pseudo-labels, slots (overlaid on the frames; ``slots_title`` names whose), W_fg heat map.
    Label maps may be at the attention grid; everything is upsampled to the frame size."""
    img = to_uint8_frames(frames, normalised)
    T, H, W, _ = img.shape
    rows: list[tuple[str, np.ndarray]] = [("input", img)]
    if gt is not None:
        rows.append(("ground truth", label_image(_labels(gt, T), (H, W))))
    if motion is not None:
        rows.append(("motion masks", label_image(_labels(motion, T), (H, W))))
    if pseudo is not None:
        rows.append(("teacher pseudo-labels", label_image(_labels(pseudo, T), (H, W))))
    if slots is not None:
        rows.append((slots_title, slot_overlay(img, _labels(slots, T))))
    if fg is not None:
        fgv = _to_numpy(fg)
        if fgv.ndim == 2:
            fgv = fgv[None]
        rows.append(("W_fg", heat_image(fgv, (H, W))))
    width = T * W + (T - 1) * pad
    band_h = max(12, min(24, H // 4)) if titles else 0
    blocks = []
    for name, r in rows:
        line = np.full((H, width, 3), 255, dtype=np.uint8)
        for t in range(T):
            x = t * (W + pad)
            line[:, x : x + W] = r[t]
        if titles:
            blocks.append(_title_band(name, width, band_h))
        blocks.append(line)
        blocks.append(np.full((pad, width, 3), 255, dtype=np.uint8))
    return np.ascontiguousarray(np.concatenate(blocks[:-1], axis=0))


def contact_sheet(images, columns: int = 4, pad: int = 2) -> np.ndarray:
    """Images uint8 [N,H,W,3] tiled row-major into one uint8 picture (white padding)."""
    imgs = np.asarray(images)
    if imgs.ndim != 4 or imgs.shape[-1] != 3:
        raise ValueError(f"contact_sheet expects [N,H,W,3] images, got shape {imgs.shape}")
    n, H, W, _ = imgs.shape
    cols = max(1, min(columns, n))
    nrows = -(-n // cols)
    sheet = np.full((nrows * H + (nrows - 1) * pad, cols * W + (cols - 1) * pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * (H + pad) : r * (H + pad) + H, c * (W + pad) : c * (W + pad) + W] = imgs[i]
    return sheet


def write_png(path, image: np.ndarray) -> None:
    """Write an RGB uint8 (or single-channel uint8/uint16) image; raises OSError on failure."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), arr):
        raise OSError(f"could not write image {path}")


def _argmax_ids(attn, bg_index: int) -> np.ndarray:
    """Soft attention [T,K,h,w] -> ids [T,h,w] (metrics.slot_labels: background slot 0, k -> k+1)."""
    from diod_ray.metrics import slot_labels

    a = attn.detach().float() if isinstance(attn, torch.Tensor) else torch.as_tensor(attn)
    return slot_labels(a[None], bg_index)[0].cpu().numpy()


def training_panel(
    batch: dict, out, teacher_out=None, bg_index: int = -1, colour_order: str = "rgb"
):
    """The TensorBoard picture of a training step: the first clip of the batch as an
    :func:`example_grid` (input = weak view, motion masks, teacher argmax labels when a teacher
    ran, student slots, W_fg). uint8 [H',W',3], log with ``dataformats="HWC"``."""
    frames = batch["weak"][0].detach().float().cpu()
    if colour_order == "bgr":
        frames = frames.flip(1)  # [T,3,H,W] back to RGB
    K = out.attn.shape[2]
    bg = bg_index % K
    pseudo = _argmax_ids(teacher_out.attn[0], bg) if teacher_out is not None else None
    return example_grid(
        frames,
        motion=batch["motion"][0].cpu() if "motion" in batch else None,
        pseudo=pseudo,
        slots=_argmax_ids(out.attn[0], bg),
        fg=out.fg[0].detach().float().cpu(),
    )
