"""Data throughput on this machine; prints JSON.

clips/s for: synthetic rendering, flow-based motion masks, the frame/mask encodings (raw+zstd vs
PNG: bytes per clip, read+decode), and the Ray Data read+decode+augment pipeline from local disk
and from S3 (a moto ThreadedMotoServer on 127.0.0.1 started here), at the ``synthetic``
(64x128) and ``tri-pd`` (480x968) resolutions. ``pipeline_local`` / ``pipeline_s3`` are the
training stream as the loop reads it (ordered Datasets, shuffle buffer); ``order_cost`` reads the
same Dataset with and without ``preserve_order`` (the price of deterministic runs, issue #13).

    python benchmarks/data_throughput.py [--clips 32] [--tri-pd-clips 4] [--skip-order-cost]
    python benchmarks/data_throughput.py --order-cost-only --clips 64
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from diod_ray.config import load_config  # noqa: E402
from diod_ray.data.motion import motion_masks  # noqa: E402
from diod_ray.data.shards import store  # noqa: E402
from diod_ray.data.shards.rows import SCHEMA, Clip, decode_row, encode_clip  # noqa: E402
from diod_ray.data.streaming.batches import iter_train_batches  # noqa: E402
from diod_ray.data.streaming.datasets import (  # noqa: E402
    MAP_BATCH_CLIPS,
    _train_map,
    train_dataset,
    train_index,
)
from diod_ray.data.synthetic.render import generate_video  # noqa: E402


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 2) if seconds > 0 else float("inf")


def render(cfg, n: int) -> tuple[list[Clip], dict]:
    d = cfg.data
    t0 = time.perf_counter()
    videos = [generate_video(d.synthetic, d.height, d.width, "bench", i) for i in range(n)]
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    motion = [motion_masks(v.frames, d.flow, d.min_mask_pixels) for v in videos]
    t_flow = time.perf_counter() - t0
    clips = [
        Clip(v.video_id, v.video_id, v.frames, m, v.gt, v.moving, source="synthetic")
        for v, m in zip(videos, motion)
    ]
    return clips, {"generate_clips_s": _rate(n, t_gen), "motion_masks_clips_s": _rate(n, t_flow)}


def encodings(clips: list[Clip]) -> dict:
    """Bytes per clip and read+decode clips/s of one in-memory Parquet file per codec."""
    out = {}
    for codec in ("raw", "png"):
        t0 = time.perf_counter()
        rows = [encode_clip(c, codec, codec) for c in clips]
        t_enc = time.perf_counter() - t0
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), buf, compression="zstd")
        data = buf.getvalue()
        reps = 3
        t0 = time.perf_counter()
        for _ in range(reps):
            for row in pq.read_table(pa.BufferReader(data)).to_pylist():
                decode_row(row)
        t_dec = (time.perf_counter() - t0) / reps
        out[f"{codec}+zstd" if codec == "raw" else codec] = {
            "MB_per_clip": round(len(data) / len(clips) / 1e6, 4),
            "encode_clips_s": _rate(len(clips), t_enc),
            "read_decode_clips_s": _rate(len(clips), t_dec),
        }
    return out


def decode_augment(cfg, clips: list[Clip]) -> float:
    """The map_batches UDF alone (decode + weak/strong augmentation), one process, clips/s."""
    table = pa.Table.from_pylist([encode_clip(c) for c in clips], schema=SCHEMA)
    t0 = time.perf_counter()
    for i in range(0, table.num_rows, MAP_BATCH_CLIPS):
        _train_map(table.slice(i, MAP_BATCH_CLIPS), cfg)
    return _rate(table.num_rows, time.perf_counter() - t0)


def _bench_cfg(cfg, uri: str):
    c = load_config(sets=[])
    c.data = cfg.data
    c.data.uri = uri
    c.data.batch_size = 1
    return c


def ray_pipeline(cfg, uri: str, passes: int = 2) -> dict:
    """read + decode + weak/strong augmentation -> torch batches, clips/s per pass (epoch p =
    pass p: a fresh one-epoch stream each; the training loop keeps one stream for the run)."""
    c = _bench_cfg(cfg, uri)
    n = store.count_clips(uri, c.data.train_split, c.storage)
    rates = []
    for p in range(passes):
        t0 = time.perf_counter()
        got = sum(1 for _ in iter_train_batches(c, p, n, "cpu"))
        rates.append((got, round(time.perf_counter() - t0, 2)))
    # a pass includes Ray Data's start-up (planning, task launch: seconds on 2 cores)
    return {
        "clips_per_pass": rates[0][0],
        "pass_seconds": [r[1] for r in rates],
        "clips_s_best_pass": max(_rate(n, t) for n, t in rates),
    }


def order_cost(cfg, uri: str, reps: int = 3) -> dict:
    """clips/s of one epoch's Dataset (read + decode + augment, iter_batches) with
    ``preserve_order`` True and False, alternating, best of ``reps`` each."""
    from diod_ray.data.streaming.order import FileRead

    c = _bench_cfg(cfg, uri)
    counts = train_index(c).counts
    best = {True: 0.0, False: 0.0}
    for r in range(reps):
        for keep in (True, False):
            tasks = [(r, 0, FileRead(i, 0, 1, n)) for i, n in enumerate(counts)]
            ds = train_dataset(c, tasks)
            ds.context.execution_options.preserve_order = keep
            t0 = time.perf_counter()
            n = sum(len(b["clip_id"]) for b in ds.iter_batches(batch_size=None))
            best[keep] = max(best[keep], _rate(n, time.perf_counter() - t0))
    return {
        "preserve_order_clips_s": best[True],
        "unordered_clips_s": best[False],
        "ordered_over_unordered": round(best[True] / best[False], 3) if best[False] else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=32, help="clips at 64x128")
    ap.add_argument("--tri-pd-clips", type=int, default=4, help="clips at 480x968")
    ap.add_argument("--skip-order-cost", action="store_true", help="no ordered/unordered row")
    ap.add_argument(
        "--order-cost-only", action="store_true", help="only the ordered/unordered row, 64x128"
    )
    args = ap.parse_args()

    import boto3
    import ray
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="diod-bench")
    # a fresh local Ray, never one found through /tmp/ray (another cluster on this host)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "date": time.strftime("%Y-%m-%d"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, h, w, n in (
            ("synthetic", 64, 128, args.clips),
            ("tri-pd", 480, 968, args.tri_pd_clips),
        ):
            cfg = load_config("synthetic", sets=[f"data.height={h}", f"data.width={w}"])
            clips, r = render(cfg, n)
            if args.order_cost_only:
                local = os.path.join(tmp, name)
                store.write_split(local, "train", clips, cfg.storage, clips_per_file=8)
                result[name] = {"clips": n, "order_cost_local": order_cost(cfg, local)}
                break
            r["clips"] = n
            r["encodings"] = encodings(clips)
            r["decode_augment_clips_s"] = decode_augment(cfg, clips)
            local = os.path.join(tmp, name)
            s3 = f"s3://diod-bench/{name}"
            for uri in (local, s3):
                store.write_split(uri, "train", clips, cfg.storage, clips_per_file=8)
            r["pipeline_local"] = ray_pipeline(cfg, local)
            r["pipeline_s3"] = ray_pipeline(cfg, s3)
            if not args.skip_order_cost:
                r["order_cost_local"] = order_cost(cfg, local)
            result[name] = r
    ray.shutdown()
    server.stop()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
