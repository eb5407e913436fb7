"""Objects of your own video:

    python -m diod_ray.predict INPUT --checkpoint URI --out DIR [--clip-len T] [--reset-per-clip]
        [--overwrite] [--device auto|cpu|cuda] [--weights student|teacher] [--fps F]
        [--mask-size input|model]

INPUT is an .mp4 (or any video OpenCV reads) or a folder of frames. The frames are resized to the
checkpoint's input size (``data.height x data.width``) and run through the model in clips of T
frames (default ``data.clip_len``). Slot and ConvGRU state carry over from one clip to the next
(``model(video, state=previous.state)``), so slot ids stay consistent over the whole video;
``--reset-per-clip`` starts every clip fresh instead (the reference's protocol).

DIR receives:
- ``masks/frame_000000.png`` ...: per-frame instance ids (uint8, or uint16 beyond 255 slots;
  0 = background slot, slot k -> k + 1), nearest-upsampled from the attention grid to the input
  video's size (``--mask-size model``: the model's input size);
- ``overlay.mp4``: the video with each slot in its own colour (background transparent);
- ``contact_sheet.png``: evenly spaced frames with their overlays, ids and W_fg;
- ``summary.json``: what ran (also printed on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from diod_ray.cli_errors import UsageError, command_line
from diod_ray.data.frames import prepare_frames
from diod_ray.inference import load_for_inference, predict_video, resolve_device
from diod_ray.storage import json_safe

CONTACT_FRAMES = 8
OUTPUT_FILES = ("overlay.mp4", "contact_sheet.png", "summary.json")


def _upsample_ids(ids: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """[N,h,w] -> [N,H,W] nearest (same rule as diod_ray.metrics.downsample_nearest)."""
    H, W = hw
    h, w = ids.shape[-2:]
    rows = (np.arange(H) * h) // H
    cols = (np.arange(W) * w) // W
    return ids[:, rows][:, :, cols]


def _input_fps(path: str) -> float:
    """The frame rate of a video file (10 for a folder of frames or when unknown)."""
    if os.path.isdir(path):
        return 10.0
    import cv2

    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    cap.release()
    return float(fps) if fps and 0 < fps < 1000 else 10.0


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty existing DIR unless --overwrite (checked before any work)."""
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise UsageError(f"--out {out} is not empty (use --overwrite to replace it)")


def _clear_outputs(out: Path) -> None:
    """Remove only what this command writes (after the model ran); other files stay."""
    if (out / "masks").is_dir():
        shutil.rmtree(out / "masks")
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m diod_ray.predict",
        description="Segment the objects of a video (.mp4 or a folder of frames) with a checkpoint.",
    )
    p.add_argument("input", help="an .mp4 file or a folder of frames (sorted by name)")
    p.add_argument("--checkpoint", required=True, help="checkpoint directory (local or s3://)")
    p.add_argument("--out", required=True, help="output directory (must be empty or new)")
    p.add_argument(
        "--clip-len", type=int, default=None, help="frames per clip (default data.clip_len)"
    )
    p.add_argument(
        "--reset-per-clip",
        action="store_true",
        help="start every clip from a fresh state (default: carry slots + ConvGRU state over)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--weights", choices=("student", "teacher"), default=None)
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of overlay.mp4 (default: the input's, or 10)",
    )
    p.add_argument(
        "--mask-size",
        choices=("input", "model"),
        default="input",
        help="size of the mask PNGs and overlay: the input video's or the model's input size",
    )
    return p


@command_line("predict")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.clip_len is not None and args.clip_len < 1:
        raise UsageError("--clip-len must be >= 1")
    if not os.path.exists(args.input):
        raise UsageError(f"input {args.input} does not exist")
    out = Path(args.out)
    _check_out_dir(out, args.overwrite)
    device = resolve_device(args.device)

    model, cfg, which = load_for_inference(args.checkpoint, args.weights, device)
    model.eval()
    frames = _read_input(args.input)  # uint8 RGB [N,H0,W0,3]
    clip_len = args.clip_len or cfg.data.clip_len
    t0 = time.perf_counter()
    video = prepare_frames(frames, cfg.data.height, cfg.data.width, cfg.data.colour_order)
    ids_t, fg_t = predict_video(model, video, clip_len, carry_state=not args.reset_per_clip)
    seconds = time.perf_counter() - t0
    ids = ids_t.numpy()

    _clear_outputs(out)
    if args.mask_size == "input":
        shown = frames
    else:
        from diod_ray.data.streaming.augment import resize_frames

        shown = resize_frames(frames, cfg.data.height, cfg.data.width, nearest=False)
    dtype = np.uint8 if model.num_slots <= 255 else np.uint16
    _write_masks_and_overlay(out, shown, ids, dtype, args.fps or _input_fps(args.input))
    _write_contact_sheet(out, shown, ids, fg_t.numpy())

    summary = {
        "input": str(args.input),
        "checkpoint": args.checkpoint,
        "weights": which,
        "frames": int(len(ids)),
        "input_size": list(frames.shape[1:3]),
        "model_size": [cfg.data.height, cfg.data.width],
        "grid": list(ids.shape[1:]),
        "mask_size": list(shown.shape[1:3]),
        "mask_dtype": np.dtype(dtype).name,
        "clip_len": clip_len,
        "clips": -(-len(ids) // clip_len),
        "carry_state": not args.reset_per_clip,
        "slots_used": [int(u) for u in np.unique(ids) if u > 0],
        "device": str(device),
        "seconds_model": round(seconds, 3),
        "out": str(out),
        "masks": str(out / "masks"),
        "overlay": str(out / "overlay.mp4"),
        "contact_sheet": str(out / "contact_sheet.png"),
    }
    text = json.dumps(json_safe(summary))
    (out / "summary.json").write_text(text + "\n")
    print(text)
    return 0


def _read_input(path: str) -> np.ndarray:
    """The frames of INPUT, uint8 RGB [N,H0,W0,3]; an unreadable or empty input is a usage error."""
    from diod_ray.data.video_io import read_frames

    try:
        frames = read_frames(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read input {path}: {exc}") from None
    if len(frames) == 0:
        raise UsageError(f"input {path} holds no frames")
    return frames


def _write_masks_and_overlay(
    out: Path, shown: np.ndarray, ids: np.ndarray, dtype: type, fps: float
) -> None:
    """masks/frame_*.png (ids at the size of ``shown`` [N,H,W,3]) and overlay.mp4."""
    from diod_ray.data.video_io import write_video
    from diod_ray.viz import slot_overlay, write_png

    hw = shown.shape[1:3]
    overlays = np.empty_like(shown)
    for i in range(len(ids)):
        full = _upsample_ids(ids[i : i + 1], hw)
        write_png(out / "masks" / f"frame_{i:06d}.png", full[0].astype(dtype))
        overlays[i] = slot_overlay(shown[i : i + 1], full)[0]
    write_video(out / "overlay.mp4", overlays, fps)


def _write_contact_sheet(out: Path, shown: np.ndarray, ids: np.ndarray, fg: np.ndarray) -> None:
    """contact_sheet.png: CONTACT_FRAMES evenly spaced frames with their slots and W_fg."""
    from diod_ray.viz import contact_sheet, example_grid, write_png

    pick = np.unique(
        np.linspace(0, len(ids) - 1, min(CONTACT_FRAMES, len(ids))).round().astype(int)
    )
    grids = [
        example_grid(shown[i : i + 1], slots=ids[i : i + 1], fg=fg[i : i + 1], titles=False)
        for i in pick
    ]
    write_png(out / "contact_sheet.png", contact_sheet(np.stack(grids), columns=4))


if __name__ == "__main__":
    sys.exit(main())
