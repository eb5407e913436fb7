"""Motion-mask quality (and generator / flow speed) on the synthetic benchmark; prints JSON.

    python benchmarks/synthetic_quality.py                      # 64 test clips, synthetic preset
    python benchmarks/synthetic_quality.py --height 480 --width 968 --clips 2 --threads 1

Quality is :class:`diod_ray.data.inspection.mask_quality.MaskQuality` of the flow-derived motion
masks against the generator's ground truth, overall and split by camera motion.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import cv2

from diod_ray.config import load_preset
from diod_ray.data.inspection.mask_quality import MaskQuality
from diod_ray.data.motion import motion_masks
from diod_ray.data.synthetic.render import generate_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="synthetic")
    ap.add_argument("--split", default="test")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--height", type=int, default=0, help="0: the preset's data.height")
    ap.add_argument("--width", type=int, default=0, help="0: the preset's data.width")
    ap.add_argument("--method", default="", help="flow method override (dis / farneback)")
    ap.add_argument("--version", type=int, default=0, help="benchmark version (0: the preset's)")
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (1 = one core)")
    args = ap.parse_args()

    cv2.setNumThreads(args.threads)
    cfg = load_preset(args.preset)
    d = cfg.data
    if args.method:
        d.flow.method = args.method
    if args.version:
        d.synthetic.version = args.version
    h, w = args.height or d.height, args.width or d.width
    # min_mask_pixels is given at the preset's resolution: scale it with the frame area
    min_pixels = int(round(d.min_mask_pixels * (h * w) / (d.height * d.width)))
    quality = {k: MaskQuality(min_pixels) for k in ("all", "static_camera", "camera_motion")}
    gen_s = flow_s = 0.0
    for i in range(args.clips):
        t0 = time.perf_counter()
        video = generate_video(d.synthetic, h, w, args.split, i)
        t1 = time.perf_counter()
        motion = motion_masks(video.frames, d.flow, min_pixels)
        t2 = time.perf_counter()
        gen_s, flow_s = gen_s + t1 - t0, flow_s + t2 - t1
        quality["all"].update(video.gt, video.moving, motion)
        key = "camera_motion" if video.camera_motion else "static_camera"
        quality[key].update(video.gt, video.moving, motion)
    out = {
        "preset": args.preset,
        "split": args.split,
        "version": d.synthetic.version,
        "clips": args.clips,
        "frames_per_clip": d.synthetic.frames_per_video,
        "height": h,
        "width": w,
        "style": d.synthetic.style,
        "flow_method": d.flow.method,
        "cv2_threads": args.threads,
        "generate_clips_per_s": round(args.clips / gen_s, 2),
        "motion_masks_clips_per_s": round(args.clips / flow_s, 2),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "quality": {
            k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in q.summary().items()}
            for k, q in quality.items()
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
