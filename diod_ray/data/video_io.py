"""Read a user's video (an .mp4 or a folder of frames) as RGB arrays; write predictions as .mp4."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from diod_ray.data.errors import SourceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of ``path`` as uint8 [N,H,W,3] RGB.

    ``path`` is a video file (read with cv2.VideoCapture) or a folder of .png/.jpg frames read in
    sorted file-name order. Raises :class:`SourceError` naming the file when it is missing,
    unreadable, empty, or when frames differ in size.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceError("does not exist", file=str(p), expected="an .mp4 or a folder of frames")
    if p.is_dir():
        return _read_folder(p)
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(p)[None]
    return _read_video(p)


def read_image(p: Path) -> np.ndarray:
    """One .png/.jpg image -> uint8 [H,W,3] RGB; SourceError naming the file if unreadable."""
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError("unreadable image", file=str(p), expected="a .png or .jpg image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_folder(folder: Path) -> np.ndarray:
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(
            "folder holds no frames", file=str(folder), expected=f"files ending {IMAGE_SUFFIXES}"
        )
    frames = []
    for f in files:
        img = read_image(f)
        if frames and img.shape != frames[0].shape:
            raise SourceError(
                f"frame size {img.shape[1]}x{img.shape[0]} differs from "
                f"{files[0].name}'s {frames[0].shape[1]}x{frames[0].shape[0]}",
                file=str(f),
                expected="all frames of one size",
            )
        frames.append(img)
    return np.stack(frames)


def _read_video(p: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise SourceError("cannot open video", file=str(p), expected="a readable .mp4")
        frames = []
        while True:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise SourceError("video has no readable frames", file=str(p), expected="a readable .mp4")
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write uint8 [N,H,W,3] RGB frames to ``path`` as an mp4 (fourcc mp4v); returns the path.

    Refuses to replace an existing file.
    """
    p = Path(path).expanduser()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"write_video {p}: expected uint8 [N,H,W,3] frames with N >= 1, "
            f"got {frames.dtype} {frames.shape}"
        )
    if p.exists():
        raise FileExistsError(f"write_video: {p} exists; not overwriting it")
    p.parent.mkdir(parents=True, exist_ok=True)
    n, h, w, _ = frames.shape
    writer = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise SourceError("cannot open a video writer", file=str(p), expected="a writable .mp4")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return p
