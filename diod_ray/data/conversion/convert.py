"""Convert the paper datasets (docs/reference-notes.md §5) and plain video folders to shards.

Layouts (``--layout``):

- ``tri-pd``: ``<src>/scene_*/rgb/camera_0X/*.png``; train motion masks from
  ``scene/est_masks/camera_0X/<same name>``; test GT from ``scene/ari_masks/camera_0X``. Cameras
  01, 05, 06, 07, 08, 09. Each frame is resized by 0.5 (bilinear; masks nearest) and the top
  128/608 of the rows is dropped (1936x1216 -> 968x480). Test GT ids: one mapping per video, an
  instance gets an id the first time it covers more than 500 px at 480x968 (scaled by area).
- ``kitti``: train: ``<src>/<drive>/image_0{2,3}/data/*.png`` with ``raft_seg/*.png`` motion
  masks; test: ``<src>/rgb/*.png`` and ``<src>/instance/*.png`` (single images, T=1 clips, no
  motion masks). Instance PNGs in the official ``class * 256 + instance`` encoding (16 bit, any
  value >= 256) are decoded (:func:`decode_kitti_instances`); DOM's converted download (plain
  ids < 256) is used as it is. Resized straight to ``data.height x data.width``.
- ``movi-e``: ``<src>/<video>/rgb.npy`` [T,H,W,3] uint8 and ``segment.npy`` [T,H,W(,1)] as
  MoTok's ``process_movi.py`` writes them; motion masks from optical flow.
- ``frames``: ``<src>/<video>/frames/*.{png,jpg}`` (or an ``.mp4`` in the video folder, or
  ``<src>/<video>.mp4``), optional ``motion/*.png`` and ``gt/*.png`` instance-id PNGs (same
  names as the frames). Motion masks come from optical flow when ``motion/`` is absent.

Everything is resized to ``data.height x data.width`` (frames bilinear / area, masks nearest)
and cut into clips of ``data.clip_len`` consecutive frames (non-overlapping unless ``stride`` is
given for a train split).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diod_ray.config import Config
from diod_ray.data.conversion.mask_ids import (  # noqa: F401 - decode_kitti_instances re-exported
    decode_kitti_instances,
    read_mask,
    relabel_per_frame,
    relabel_video,
)
from diod_ray.data.errors import SourceError
from diod_ray.data.shards.rows import Clip
from diod_ray.data.shards.store import ShardWriter
from diod_ray.data.streaming.augment import resize_frames
from diod_ray.data.video_io import IMAGE_SUFFIXES, read_frames, read_image

LAYOUTS = ("tri-pd", "kitti", "movi-e", "frames")
TRIPD_CAMERAS = ("camera_01", "camera_05", "camera_06", "camera_07", "camera_08", "camera_09")
# TRI-PD preprocessing of the reference: 0.5 resize, then drop the top 128 of 608 rows
TRIPD_SCALE = 0.5
TRIPD_CROP_SHARE = 128 / 608
# TRI-PD test GT: an instance gets an id when it first covers more than 500 px at 480x968
TRIPD_GT_MIN_PIXELS = 500
TRIPD_GT_AREA = 480 * 968


@dataclass
class SourceVideo:
    """One source video before cutting: frames uint8 [N,H,W,3] RGB, optional masks int [N,H,W]."""

    video_id: str
    frames: np.ndarray
    motion: np.ndarray | None = None
    gt: np.ndarray | None = None
    gt_moving: np.ndarray | None = None
    source: str = "frames"


# ------------------------------------------------------------------------------------------
# File reading
# ------------------------------------------------------------------------------------------


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _stack(arrays: list[np.ndarray], files: list[Path], what: str) -> np.ndarray:
    shape = arrays[0].shape
    for a, f in zip(arrays, files):
        if a.shape != shape:
            raise SourceError(
                f"{what} of shape {a.shape}", file=str(f), expected=f"{shape} like {files[0].name}"
            )
    return np.stack(arrays)


def read_image_folder(folder: Path) -> tuple[np.ndarray, list[Path]]:
    files = _images(folder)
    if not files:
        raise SourceError("no images", file=str(folder), expected=f"files ending {IMAGE_SUFFIXES}")
    return _stack([read_image(f) for f in files], files, "frame"), files


def read_masks_like(folder: Path, frame_files: list[Path]) -> np.ndarray:
    """Masks with the same stem as each frame file (any image suffix)."""
    masks, files = [], []
    for f in frame_files:
        cands = [folder / (f.stem + s) for s in (".png", f.suffix)]
        path = next((c for c in cands if c.exists()), cands[0])
        masks.append(read_mask(path))
        files.append(path)
    return _stack(masks, files, "mask")


def _check_pair(frames: np.ndarray, masks: np.ndarray, what: str, where: str) -> None:
    if masks.shape != frames.shape[:3]:
        raise SourceError(
            f"{what} of shape {masks.shape}",
            file=where,
            expected=f"one mask per frame of the frames' size {frames.shape[:3]}",
        )


# ------------------------------------------------------------------------------------------
# Layouts -> SourceVideo
# ------------------------------------------------------------------------------------------


def _tripd_prep(x: np.ndarray, nearest: bool) -> np.ndarray:
    """The reference's TRI-PD preprocessing: 0.5 resize, drop the top 128/608 of the rows."""
    h, w = x.shape[1:3]
    nh, nw = max(1, int(round(h * TRIPD_SCALE))), max(1, int(round(w * TRIPD_SCALE)))
    x = resize_frames(x, nh, nw, nearest)
    return x[:, int(round(nh * TRIPD_CROP_SHARE)) :]


def videos_tripd(src: Path, split: str, cfg: Config) -> Iterator[SourceVideo]:
    scenes = sorted(p for p in src.iterdir() if p.is_dir())
    if not scenes:
        raise SourceError("no scene folders", file=str(src), expected="<src>/scene_*/rgb/camera_0X")
    for scene in scenes:
        for cam in TRIPD_CAMERAS:
            rgb_dir = scene / "rgb" / cam
            if not rgb_dir.is_dir():
                continue
            frames, files = read_image_folder(rgb_dir)
            frames = _tripd_prep(frames, nearest=False)
            vid = f"{scene.name}/{cam}"
            if split == "train":
                est = scene / "est_masks" / cam
                if not est.is_dir():
                    raise SourceError(
                        "motion masks missing", file=str(est), expected="est_masks/camera_0X"
                    )
                motion = _tripd_prep(read_masks_like(est, files).astype(np.uint16), nearest=True)
                _check_pair(frames, motion, "est_masks", str(est))
                yield SourceVideo(vid, frames, motion=motion.astype(np.int32), source="tri-pd")
            else:
                ari = scene / "ari_masks" / cam
                if not ari.is_dir():
                    raise SourceError(
                        "GT masks missing", file=str(ari), expected="ari_masks/camera_0X"
                    )
                gt = _tripd_prep(read_masks_like(ari, files).astype(np.uint16), nearest=True)
                _check_pair(frames, gt, "ari_masks", str(ari))
                yield SourceVideo(vid, frames, gt=gt.astype(np.int32), source="tri-pd")


def videos_kitti(src: Path, split: str, cfg: Config) -> Iterator[SourceVideo]:
    if split != "train":
        rgb, inst = src / "rgb", src / "instance"
        for d in (rgb, inst):
            if not d.is_dir():
                raise SourceError(
                    "folder missing", file=str(d), expected="<src>/rgb and <src>/instance"
                )
        files = _images(rgb)
        if not files:
            raise SourceError("no images", file=str(rgb), expected="KITTI test PNGs")
        for f in files:  # 200 single images: T=1 clips
            frame = read_image(f)[None]
            gt = decode_kitti_instances(read_masks_like(inst, [f]))
            _check_pair(frame, gt, "instance mask", str(inst / f.name))
            yield SourceVideo(f"kitti-test/{f.stem}", frame, gt=gt, source="kitti")
        return
    drives = sorted(p for p in src.iterdir() if p.is_dir())
    found = False
    for drive in drives:
        for cam in ("image_02", "image_03"):
            data = drive / cam / "data"
            if not data.is_dir():
                continue
            found = True
            frames, files = read_image_folder(data)
            seg = drive / cam / "raft_seg"
            if not seg.is_dir():
                raise SourceError(
                    "motion masks missing", file=str(seg), expected="image_0X/raft_seg"
                )
            motion = read_masks_like(seg, files)
            _check_pair(frames, motion, "raft_seg masks", str(seg))
            yield SourceVideo(f"{drive.name}/{cam}", frames, motion=motion, source="kitti")
    if not found:
        raise SourceError("no drives", file=str(src), expected="<src>/<drive>/image_02/data/*.png")


def _load_npy(path: Path) -> np.ndarray:
    if not path.exists():
        raise SourceError("array missing", file=str(path), expected="a .npy written by MoTok")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SourceError(
            f"unreadable array ({exc})", file=str(path), expected="a .npy array"
        ) from exc


def videos_movi(src: Path, split: str, cfg: Config) -> Iterator[SourceVideo]:
    vids = sorted(p for p in src.iterdir() if p.is_dir())
    if not vids:
        raise SourceError("no video folders", file=str(src), expected="<src>/<video>/rgb.npy")
    for v in vids:
        rgb = _load_npy(v / "rgb.npy")
        if rgb.ndim != 4 or rgb.shape[-1] != 3:
            raise SourceError(
                f"rgb of shape {rgb.shape}", file=str(v / "rgb.npy"), expected="[T,H,W,3]"
            )
        if rgb.dtype != np.uint8:
            rgb = np.clip(rgb * (255.0 if rgb.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        seg = _load_npy(v / "segment.npy")
        if seg.ndim == 4:
            seg = seg[..., 0]
        _check_pair(rgb, seg, "segment.npy", str(v / "segment.npy"))
        yield SourceVideo(v.name, rgb, gt=seg.astype(np.int32), source="movi-e")


def _frames_source(vdir: Path) -> tuple[np.ndarray, list[Path] | None]:

    fdir = vdir / "frames"
    if fdir.is_dir():
        frames, files = read_image_folder(fdir)
        return frames, files
    mp4s = sorted(vdir.glob("*.mp4"))
    if mp4s:
        return read_frames(mp4s[0]), None
    raise SourceError("no frames/ folder or .mp4", file=str(vdir), expected="<video>/frames/*.png")


def videos_frames(src: Path, split: str, cfg: Config) -> Iterator[SourceVideo]:

    entries = sorted(p for p in src.iterdir() if p.is_dir() or p.suffix.lower() == ".mp4")
    if not entries:
        raise SourceError(
            "no videos", file=str(src), expected="<src>/<video>/frames/*.png or *.mp4"
        )
    for e in entries:
        if e.is_file():
            yield SourceVideo(e.stem, read_frames(e), source="frames")
            continue
        frames, files = _frames_source(e)
        motion = gt = None
        if (e / "motion").is_dir():
            if files is None:
                files = [Path(f"{i:06d}.png") for i in range(len(frames))]
            motion = read_masks_like(e / "motion", files)
            _check_pair(frames, motion, "motion masks", str(e / "motion"))
        if (e / "gt").is_dir():
            if files is None:
                files = [Path(f"{i:06d}.png") for i in range(len(frames))]
            gt = read_masks_like(e / "gt", files)
            _check_pair(frames, gt, "GT masks", str(e / "gt"))
        yield SourceVideo(e.name, frames, motion=motion, gt=gt, source="frames")


_LAYOUT_READERS = {
    "tri-pd": videos_tripd,
    "kitti": videos_kitti,
    "movi-e": videos_movi,
    "frames": videos_frames,
}


# ------------------------------------------------------------------------------------------
# SourceVideo -> clips
# ------------------------------------------------------------------------------------------


def video_to_clips(
    video: SourceVideo,
    cfg: Config,
    split: str,
    stride: int | None = None,
    moving_flags: str = "derive",
) -> list[Clip]:
    """Resize to the config resolution, fill in motion masks from flow where the source has none,
    normalise GT ids, derive moving flags where GT has none (``moving_flags="derive"``, videos of
    2+ frames; :mod:`diod_ray.data.conversion.moving_flags`), and cut clips of ``data.clip_len``
    frames."""
    from diod_ray.data.motion import motion_masks

    d = cfg.data
    frames, motion, gt = video.frames, video.motion, video.gt
    n = frames.shape[0]
    if frames.shape[1:3] != (d.height, d.width):
        frames = resize_frames(frames, d.height, d.width, nearest=False)
        if motion is not None:
            motion = resize_frames(motion.astype(np.uint16), d.height, d.width, True).astype(
                np.int32
            )
        if gt is not None:
            gt = resize_frames(gt.astype(np.uint16), d.height, d.width, True).astype(np.int32)
    if motion is None:
        motion = motion_masks(frames, d.flow, d.min_mask_pixels)
    else:
        motion = relabel_per_frame(motion, d.min_mask_pixels)
    if gt is not None:
        if video.source == "tri-pd":
            first = int(round(TRIPD_GT_MIN_PIXELS * d.height * d.width / TRIPD_GT_AREA))
            gt = relabel_video(gt, first)
        else:
            gt = relabel_video(gt, 0)
    if split == "train":
        gt = None  # training reads motion masks only; GT belongs to eval splits
    elif gt is None:
        raise SourceError(
            f"video {video.video_id!r} has no GT",
            expected="GT masks for an eval split (gt/, ari_masks/, instance/)",
        )
    gt_moving = video.gt_moving
    if gt is not None and gt_moving is None and moving_flags == "derive" and n > 1:
        from diod_ray.data.conversion.moving_flags import derive_moving

        gt_moving = derive_moving(frames, gt, d.flow)  # whole video: flow across clip cuts
    length = min(d.clip_len, n) if d.clip_len > 0 else n
    step = stride if (stride and split == "train") else length
    clips = []
    for start in range(0, n - length + 1, step):
        sl = slice(start, start + length)
        clips.append(
            Clip(
                clip_id=f"{video.video_id}:{start:05d}",
                video_id=video.video_id,
                frames=frames[sl],
                motion=motion[sl],
                gt=None if gt is None else gt[sl],
                gt_moving=None if gt_moving is None else gt_moving[sl],
                frame_start=start,
                source=video.source,
            )
        )
    return clips


def convert(
    layout: str,
    src: str,
    out: str,
    cfg: Config,
    split: str = "train",
    *,
    stride: int | None = None,
    overwrite: bool = False,
    clips_per_file: int = 16,
    progress: bool = True,
    moving_flags: str = "derive",
) -> dict:
    """Convert ``src`` (a ``layout`` tree) into ``<out>/<split>`` shards; returns the manifest.

    Any split other than ``train`` is an eval split (``test``, ``val``, ...) and needs GT.
    ``moving_flags``: "derive" (default) computes flags from GT and flow where the source has
    none, "none" leaves them out (static / moving recall are then null)."""
    if moving_flags not in ("derive", "none"):
        raise SourceError(f"unknown moving_flags {moving_flags!r}", expected="derive or none")
    if layout not in LAYOUTS:
        raise SourceError(f"unknown layout {layout!r}", expected=f"one of {LAYOUTS}")
    root = Path(src).expanduser()
    if not root.is_dir():
        raise SourceError("source folder does not exist", file=str(root), expected="a folder")
    writer = ShardWriter(
        out,
        split,
        cfg.storage,
        clips_per_file=clips_per_file,
        overwrite=overwrite,
        info={
            "converter": f"diod_ray.data.conversion.convert --layout {layout}",
            "src": str(root),
            "moving_flags": "none" if split == "train" else moving_flags,
        },
    )
    with writer:
        bar = tqdm(
            desc=f"convert {layout} {split}", unit="video", disable=not progress, file=sys.stderr
        )
        with bar:
            for video in _LAYOUT_READERS[layout](root, split, cfg):
                writer.add_all(video_to_clips(video, cfg, split, stride, moving_flags))
                bar.update(1)
    return writer.manifest()
