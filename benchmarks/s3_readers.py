"""s3fs vs pyarrow's S3FileSystem on the same shards, from a local S3 server (moto on 127.0.0.1).

    python benchmarks/s3_readers.py [--preset smoke] [--clips 48] [--clips-per-file 4] [--passes 3]
    # s3fs kept out of the project's environment (its aiobotocore pins botocore):
    pip install --target /tmp/s3fs_pkgs s3fs==2026.9.0
    python benchmarks/s3_readers.py --s3fs-path /tmp/s3fs_pkgs

Writes a preset's synthetic train split (real generator) to the server as several part
files, then reads it with each reader, each in a fresh process (so start-up is measured cold):

- ``pyarrow``: the project's path, :func:`diod_ray.data.shards.store.open_split` with
  :func:`diod_ray.storage.filesystem_for` (pyarrow's C++ S3 client), every clip decoded;
- ``s3fs-wrapped``: the same project path over s3fs wrapped as
  ``pyarrow.fs.PyFileSystem(FSSpecHandler(s3fs))``, which is what Ray Data does with an fsspec
  filesystem;
- ``s3fs-native``: ``pyarrow.parquet.read_table(s3fs.open(...))`` without the wrapper.

Per reader: start-up (filesystem + manifest), clips/s of read + decode (median of the passes),
and HTTP requests (the server's access log lines) at start-up and per pass. Prints one JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BUCKET = "diod-readers"
READERS = ("pyarrow", "s3fs-wrapped", "s3fs-native")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _requests(log: str) -> int:
    with open(log) as f:
        return sum(1 for line in f if re.search(r'"(GET|HEAD|PUT|POST|DELETE) ', line))


# ------------------------------------------------------------------------------------------
# One reader, in its own process
# ------------------------------------------------------------------------------------------


def _s3fs(endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(
        endpoint_url=endpoint,
        key=os.environ["AWS_ACCESS_KEY_ID"],
        secret=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def read_with(reader: str, uri: str, endpoint: str, passes: int, log: str) -> dict:
    import pyarrow.parquet as pq

    from diod_ray.config import StorageConfig
    from diod_ray.data.shards import store
    from diod_ray.data.shards.rows import decode_row

    marks = [_requests(log)]
    t0 = time.perf_counter()
    if reader == "pyarrow":
        opened = store.open_split(uri, "train", StorageConfig(endpoint_url=endpoint))
    else:
        import pyarrow.fs as pafs

        sfs = _s3fs(endpoint)
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(sfs))
        path = uri[len("s3://") :] + "/train"
        manifest = json.loads(sfs.cat_file(f"{path}/{store.MANIFEST}"))
        opened = store.Split(uri, "train", fs, path, manifest)
    startup = time.perf_counter() - t0
    marks.append(_requests(log))
    rates, per_pass = [], []
    for _ in range(passes):
        t = time.perf_counter()
        n = 0
        if reader == "s3fs-native":
            for p in opened.part_paths:
                with sfs.open(p, "rb") as f:
                    for row in pq.read_table(f).to_pylist():
                        decode_row(row, file=p, uri=uri)
                        n += 1
        else:
            n = sum(1 for _ in store.iter_clips(opened))
        rates.append(n / (time.perf_counter() - t))
        marks.append(_requests(log))
        per_pass.append(marks[-1] - marks[-2])
    return {
        "reader": reader,
        "startup_s": round(startup, 4),
        "startup_requests": marks[1] - marks[0],
        "clips": n,
        "clips_per_s": round(statistics.median(rates), 1),
        "requests_per_pass": per_pass,
        "parts": len(opened.part_paths),
    }


# ------------------------------------------------------------------------------------------
# The driver: server, shards, one process per reader
# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="smoke", help="the preset whose synthetic frames to write")
    p.add_argument("--clips", type=int, default=48, help="train clips to generate")
    p.add_argument("--clips-per-file", type=int, default=4)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--s3fs-path", default="", help="a --target folder holding s3fs")
    p.add_argument("--reader", choices=READERS, help=argparse.SUPPRESS)
    p.add_argument("--uri", help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)
    p.add_argument("--log", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    if args.reader:  # a child: one reader
        print(json.dumps(read_with(args.reader, args.uri, args.endpoint, args.passes, args.log)))
        return 0

    import boto3

    from diod_ray.config import StorageConfig, apply_overrides, load_preset
    from diod_ray.data.shards import store
    from diod_ray.data.synthetic.generate import generate_split

    work = tempfile.mkdtemp(prefix="diod-s3-readers-")
    log = os.path.join(work, "moto.log")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
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
        cfg = apply_overrides(load_preset(args.preset), {"data.uri": os.path.join(work, "local")})
        generate_split(cfg, "train", clips=args.clips, progress=False)
        uri = f"s3://{BUCKET}/{args.preset}"
        settings = StorageConfig(endpoint_url=endpoint)
        clips = store.iter_clips(cfg.data.uri, "train")
        manifest = store.write_split(
            uri, "train", clips, settings, clips_per_file=args.clips_per_file
        )
        nbytes = sum(
            o["Size"]
            for o in boto3.client("s3", endpoint_url=endpoint)
            .list_objects_v2(Bucket=BUCKET, Prefix=f"{args.preset}/train/")
            .get("Contents", [])
        )
        results = []
        for reader in READERS:
            env = dict(os.environ)
            if reader != "pyarrow" and args.s3fs_path:
                env["PYTHONPATH"] = os.pathsep.join([args.s3fs_path, env.get("PYTHONPATH", "")])
            cmd = [sys.executable, __file__, "--reader", reader, "--uri", uri]
            cmd += ["--endpoint", endpoint, "--log", log, "--passes", str(args.passes)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                results.append({"reader": reader, "error": proc.stderr.strip()[-400:]})
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(
            json.dumps(
                {
                    "split": {
                        "clips": manifest["clips"],
                        "parts": len(manifest["files"]),
                        "bytes": nbytes,
                        "T,H,W": [manifest["num_frames"], manifest["height"], manifest["width"]],
                    },
                    "server": "moto (python -m moto.server) on 127.0.0.1",
                    "readers": results,
                },
                indent=1,
            )
        )
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
