"""Data-path start-up and throughput against a local S3 server; prints one JSON object.

    python benchmarks/data_startup.py [--files 3000] [--readers 1 2 4]

1. **Start-up per process, before and after clip ids in the manifest.** A synthetic split of
   ``--files`` tiny part files (2 clips of 2x8x16 each) is written to a moto S3 server on
   127.0.0.1 (``python -m moto.server``, its access log counting the HTTP requests). *Before*:
   the manifest as written before (no ``clip_ids``), so the train index reads every footer and
   clip_id column, one file after another (what every process did at start-up), plus the
   ``read_parquet`` construction each rank ran at every epoch (it lists every file it reads).
   *After*: the current manifest; the index and the training Dataset of a whole 24-epoch run
   are planned from it.
2. **clips/s of the data path alone** (read from S3 + decode + augment + shuffle + collate into
   torch batches, no model) on a split of ``--clips`` clips at the synthetic preset's 5x64x128,
   8 clips per part file, with at most 1, 2 and 4 Ray Data read tasks at once
   (``--readers``); Ray is started with ``max(4, cores)`` CPUs so that 4 readers can run, on
   however many cores the machine has. Each figure is a fresh 3-epoch run stream consumed whole,
   start-up included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

BUCKET = "diod-startup"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _requests(log: str) -> int:
    with open(log) as f:
        return sum(1 for line in f if re.search(r'"(GET|HEAD|PUT|POST|DELETE) ', line))


def write_many_parts(uri: str, settings, files: int) -> dict:
    """``files`` part files of 2 tiny clips each, written in parallel, and the current manifest
    (with clip ids); returns it."""
    import numpy as np
    import pyarrow.parquet as pq

    from diod_ray import storage
    from diod_ray.data.shards import store
    from diod_ray.data.shards.rows import SCHEMA, SCHEMA_VERSION, Clip, encode_clip, rows_to_table

    fs, root = storage.filesystem_for(uri, settings)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 8, 16, 3), dtype=np.uint8)
    motion = (rng.random((2, 8, 16)) > 0.7).astype(np.int32)

    def part(i: int) -> dict:
        ids = [f"v{i:05d}:{k}" for k in range(2)]
        rows = [encode_clip(Clip(c, c.split(":")[0], frames, motion)) for c in ids]
        name = f"part-{i:05d}.parquet"
        with storage.open_output(fs, f"{root}/train/{name}") as out:
            pq.write_table(rows_to_table(rows), out, compression="zstd")
        return {"name": name, "clips": 2, "clip_ids": ids}

    with ThreadPoolExecutor(8) as pool:
        entries = list(pool.map(part, range(files)))
    assert SCHEMA.names
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "split": "train",
        "clips": 2 * files,
        "files": entries,
        "num_frames": 2,
        "height": 8,
        "width": 16,
        "has_gt": False,
        "max_num_ids": 0,
        "max_motion_id": 1,
        "created": "bench",
    }
    write_manifest(fs, root, manifest)
    assert store.count_clips(uri, "train", settings) == 2 * files
    return manifest


def write_manifest(fs, root: str, manifest: dict) -> None:
    from diod_ray import storage
    from diod_ray.data.shards.store import MANIFEST

    data = json.dumps(manifest).encode()
    storage.atomic_write_bytes(fs, f"{root}/train/{MANIFEST}", data, "bench", overwrite=True)


def old_manifest(manifest: dict) -> dict:
    """The same manifest as written before clip ids and max_motion_id were listed."""
    m = {k: v for k, v in manifest.items() if k != "max_motion_id"}
    m["files"] = [{"name": f["name"], "clips": f["clips"]} for f in manifest["files"]]
    m["created"] = "bench-old"
    return m


def timed(log: str, fn):
    r0, t0 = _requests(log), time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3), _requests(log) - r0


def startup(cfg, log: str, manifest: dict, fs, root: str) -> dict:
    import ray

    from diod_ray.data.streaming.batches import TrainStream
    from diod_ray.data.streaming.datasets import train_index

    out: dict = {}
    # after: the current manifest
    index, t, req = timed(log, lambda: train_index(cfg))
    assert not index.from_footers
    out["after_index"] = {"seconds": t, "requests": req}
    steps = len(index.paths) * 2 // cfg.data.batch_size
    _, t, req = timed(log, lambda: TrainStream(cfg, steps, epoch=0, end_epoch=24).dataset)
    out["after_run_dataset_24_epochs"] = {"seconds": t, "requests": req}
    # before: the manifest as written before clip ids
    write_manifest(fs, root, old_manifest(manifest))
    index, t, req = timed(log, lambda: train_index(cfg))
    assert index.from_footers
    out["before_index_footers"] = {"seconds": t, "requests": req}
    paths = list(index.paths)
    _, t, req = timed(
        log,
        lambda: ray.data.read_parquet(
            paths, filesystem=index.fs, include_paths=True, override_num_blocks=len(paths)
        ),
    )
    out["before_read_parquet_per_epoch"] = {"seconds": t, "requests": req}
    write_manifest(fs, root, manifest)
    return out


def readers_rates(cfg, readers: list[int], epochs: int = 3) -> dict:
    """Per reader count: a fresh run stream of ``epochs`` epochs consumed whole (start-up
    included, as a worker's run starts); clips/s over it, and the first batch's latency."""
    from diod_ray.data.streaming.batches import TrainStream
    from diod_ray.data.streaming.datasets import train_index

    index = train_index(cfg)
    steps = sum(index.counts) // cfg.data.batch_size
    out = {}
    for k in readers:
        t0 = time.perf_counter()
        s = TrainStream(cfg, steps, epoch=0, end_epoch=epochs, readers=k)
        got, first = 0, None
        for e in range(epochs):
            for b in s.epoch(e):
                got += len(b["clip_id"])
                first = first or round(time.perf_counter() - t0, 2)
        wall = time.perf_counter() - t0
        out[str(k)] = {"clips_s": round(got / wall, 2), "first_batch_s": first, "clips": got}
    return out


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--files", type=int, default=3000, help="tiny part files for start-up")
    p.add_argument("--clips", type=int, default=256, help="clips of the throughput split")
    p.add_argument("--readers", type=int, nargs="+", default=[1, 2, 4])
    args = p.parse_args()

    import boto3
    import ray

    from diod_ray import storage
    from diod_ray.config import StorageConfig, apply_overrides, load_preset
    from diod_ray.data.shards import store
    from diod_ray.data.synthetic.generate import generate_split

    work = tempfile.mkdtemp(prefix="diod-data-startup-")
    log = os.path.join(work, "moto.log")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        settings = StorageConfig(endpoint_url=endpoint)
        sets = {"storage.endpoint_url": endpoint}
        many = f"s3://{BUCKET}/many"
        t0 = time.perf_counter()
        manifest = write_many_parts(many, settings, args.files)
        write_s = round(time.perf_counter() - t0, 1)
        ray.init(
            address="local",
            num_cpus=max(4, os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
        )
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        fs, root = storage.filesystem_for(many, settings)
        cfg = apply_overrides(load_preset("synthetic"), {**sets, "data.uri": many})
        result: dict = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
            "load_avg_start": [round(x, 2) for x in os.getloadavg()],
            "server": "moto (python -m moto.server) on 127.0.0.1",
            "startup_split": {"parts": args.files, "clips": manifest["clips"], "write_s": write_s},
            "startup": startup(cfg, log, manifest, fs, root),
        }
        # throughput split: the synthetic preset's clips, 8 per part file, in S3
        local = apply_overrides(
            load_preset("synthetic"),
            {"data.uri": os.path.join(work, "l"), "data.synthetic.version": 2},
        )
        generate_split(local, "train", clips=args.clips, progress=False)
        real = f"s3://{BUCKET}/synthetic"
        store.write_split(
            real, "train", store.iter_clips(local.data.uri, "train"), settings, clips_per_file=8
        )
        cfg = apply_overrides(load_preset("synthetic"), {**sets, "data.uri": real})
        result["throughput_split"] = {
            "clips": args.clips,
            "clips_per_file": 8,
            "T,H,W": [5, 64, 128],
        }
        result["data_path_clips_s_by_readers"] = readers_rates(cfg, args.readers)
        result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
        ray.shutdown()
        print(json.dumps(result, indent=1))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
