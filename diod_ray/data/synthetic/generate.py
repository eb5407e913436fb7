"""Write the synthetic benchmark as clip shards: render, compute flow-based motion masks, store.

Motion masks come from :func:`diod_ray.data.motion.motion_masks` on the rendered frames (real
OpenCV optical flow), never from the ground truth. GT ids and moving flags are stored too (the
test split needs them; on the train split they only serve ``inspect``).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import sys
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool

from tqdm import tqdm

from diod_ray.config import Config
from diod_ray.data.shards.rows import Clip
from diod_ray.data.shards.store import ShardWriter, split_exists

# generation uses a process pool of this size when there are at least POOL_MIN_CLIPS clips
POOL_WORKERS = 2
POOL_MIN_CLIPS = 48
CLIPS_PER_FILE = 32


def num_clips(cfg: Config, split: str) -> int:
    """Videos of ``split``: the test / val counts for those splits, else the train count. Each
    split draws from its own random streams (``synthetic.split_seed`` hashes the split name), so
    val, test and train videos never repeat one another."""
    s = cfg.data.synthetic
    if split in (cfg.data.test_split, "test"):
        return s.num_test_clips
    if split in (cfg.data.val_split, "val"):
        return s.num_val_clips
    return s.num_train_clips


def render_clips(cfg: Config, split: str, index: int) -> list[Clip]:
    """Video ``index`` of ``split`` -> clips of ``data.clip_len`` frames (non-overlapping; a video
    of exactly ``clip_len`` frames is one clip), with motion masks from optical flow."""
    from diod_ray.data.motion import motion_masks
    from diod_ray.data.synthetic.render import generate_video

    d = cfg.data
    video = generate_video(d.synthetic, d.height, d.width, split, index)
    motion = motion_masks(video.frames, d.flow, d.min_mask_pixels)
    t_all = video.frames.shape[0]
    length = min(d.clip_len, t_all) if d.clip_len > 0 else t_all
    clips = []
    for start in range(0, t_all - length + 1, length):
        sl = slice(start, start + length)
        cid = video.video_id if length == t_all else f"{video.video_id}:{start:04d}"
        clips.append(
            Clip(
                clip_id=cid,
                video_id=video.video_id,
                frames=video.frames[sl],
                motion=motion[sl],
                gt=video.gt[sl],
                gt_moving=video.moving[sl],
                frame_start=start,
                source="synthetic",
                camera_motion=video.camera_motion,
            )
        )
    return clips


def _render(args: tuple[Config, str, int]) -> list[Clip]:
    return render_clips(*args)


def iter_synthetic(
    cfg: Config, split: str, n: int, workers: int | None = None
) -> Iterator[list[Clip]]:
    """The clips of videos 0..n-1 in order; a spawn pool of ``workers`` processes when it pays."""
    workers = workers if workers is not None else (POOL_WORKERS if n >= POOL_MIN_CLIPS else 1)
    jobs = [(cfg, split, i) for i in range(n)]
    done = 0
    if workers > 1:
        # spawn, not fork: the caller may hold Ray / torch threads. If the pool cannot start
        # (e.g. an interactive __main__ that spawn cannot re-import), continue in-process.
        try:
            with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
                for clips in pool.map(_render, jobs, chunksize=4):
                    yield clips
                    done += 1
        except BrokenProcessPool:
            pass
    for j in jobs[done:]:
        yield _render(j)


def generate_split(
    cfg: Config,
    split: str,
    uri: str | None = None,
    clips: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Render ``clips`` videos (default from the config) of ``split`` into ``uri`` (default
    ``data.uri``) atomically; returns the manifest."""
    uri = uri or cfg.data.uri
    n = clips if clips is not None else num_clips(cfg, split)
    writer = ShardWriter(
        uri,
        split,
        cfg.storage,
        clips_per_file=CLIPS_PER_FILE,
        overwrite=overwrite,
        info={
            "generator": "diod_ray.data.synthetic.generate",
            "synthetic": vars(cfg.data.synthetic).copy(),
            "flow": vars(cfg.data.flow).copy(),
            "min_mask_pixels": cfg.data.min_mask_pixels,
        },
    )
    with writer:  # fails before rendering anything when the split exists and overwrite is off
        bar = tqdm(
            total=n, desc=f"generate {split}", unit="video", disable=not progress, file=sys.stderr
        )
        with bar:
            for video_clips in iter_synthetic(cfg, split, n, workers):
                writer.add_all(video_clips)
                bar.update(1)
    return writer.manifest()


def ensure_synthetic(cfg: Config, progress: bool = True) -> None:
    """Write the train and test splits of the synthetic benchmark to ``data.uri`` when missing,
    and the val split with them when the folder is new (``synthetic.num_val_clips`` > 0).

    A folder written before val splits existed (e.g. ``synthetic-v1``) is left as it is: the
    training job then validates on the first clips of test and says so once (docs/data.md).
    A folder whose manifest names another benchmark version than the config is refused."""
    d = cfg.data
    fresh = not split_exists(d.uri, d.train_split, cfg.storage)
    for split in (d.train_split, d.test_split):
        if split_exists(d.uri, split, cfg.storage):
            _check_version(cfg, split)
        else:
            generate_split(cfg, split, progress=progress)
    if (
        fresh
        and d.synthetic.num_val_clips > 0
        and not split_exists(d.uri, d.val_split, cfg.storage)
    ):
        generate_split(cfg, d.val_split, progress=progress)


def _check_version(cfg: Config, split: str) -> None:
    """The split's generator version (manifests before version 2 existed: 1) must be the
    config's ``data.synthetic.version``."""
    from diod_ray.data.errors import DataError
    from diod_ray.data.shards.store import read_manifest

    synth = read_manifest(cfg.data.uri, split, cfg.storage).get("synthetic")
    if not isinstance(synth, dict):
        return  # converted data under a synthetic config: nothing to compare
    have, want = int(synth.get("version", 1)), cfg.data.synthetic.version
    if have != want:
        raise DataError(
            f"synthetic benchmark version {have}, but data.synthetic.version is {want}",
            uri=cfg.data.uri,
            file=f"{split}/_manifest.json",
            field="synthetic.version",
            expected=f"a folder of version {want} (preset synthetic: version 3 in "
            f"~/.cache/diod_ray/synthetic-v3; synthetic-v2: version 2 in .../synthetic-v2) or "
            f"data.synthetic.version={have}",
        )
