"""Reading user videos (mp4 / frame folders) and writing mp4s."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from diod_ray.data.errors import SourceError
from diod_ray.data.video_io import read_frames, write_video


def _smooth_frames(n=6, h=48, w=64):
    """Smooth moving gradients: they survive mp4 compression nearly unchanged."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for t in range(n):
        r = 128 + 100 * np.sin((xx + 3 * t) / 9)
        g = 128 + 100 * np.cos((yy - 2 * t) / 7)
        b = np.full_like(xx, 40 + 20 * t)
        out.append(np.stack([r, g, b], -1))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def test_mp4_round_trip(tmp_path):
    frames = _smooth_frames()
    path = write_video(tmp_path / "clip.mp4", frames, fps=5)
    back = read_frames(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames.astype(int)).mean((1, 2))  # [N,3] per channel
    assert err.max() < 12, err  # RGB order kept (a BGR swap would be ~80 on R/B)


def test_write_video_refuses_overwrite_and_bad_arrays(tmp_path):
    frames = _smooth_frames(2)
    p = write_video(tmp_path / "a.mp4", frames)
    with pytest.raises(FileExistsError, match="a.mp4"):
        write_video(p, frames)
    with pytest.raises(ValueError, match=r"b\.mp4"):
        write_video(tmp_path / "b.mp4", frames.astype(np.float32))


def test_png_folder_round_trip_sorted(tmp_path):
    frames = _smooth_frames(4)
    for i, f in enumerate(frames):  # written out of order: reading sorts by name
        cv2.imwrite(str(tmp_path / f"frame_{3 - i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("ignored")
    back = read_frames(tmp_path)
    assert np.array_equal(back, frames[::-1])


def test_missing_path_names_file(tmp_path):
    with pytest.raises(SourceError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4")


def test_empty_folder_names_folder(tmp_path):
    d = tmp_path / "empty_frames"
    d.mkdir()
    with pytest.raises(SourceError, match="empty_frames"):
        read_frames(d)


def test_unreadable_image_names_file(tmp_path):
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "001.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="001.png"):
        read_frames(tmp_path)


def test_frames_of_different_sizes_name_file(tmp_path):
    cv2.imwrite(str(tmp_path / "000.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "001.png"), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(SourceError, match="001.png"):
        read_frames(tmp_path)


def test_unreadable_video_names_file(tmp_path):
    p = tmp_path / "broken.mp4"
    p.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="broken.mp4"):
        read_frames(p)
