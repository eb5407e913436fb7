"""``python -m diod_ray.data``: generate | convert | inspect | validate clip shards.

Every subcommand takes ``--preset / --config / --set`` (the data section supplies resolution,
clip length, flow settings and the S3 endpoint/region).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

from diod_ray.cli_errors import command_line, report
from diod_ray.config import ConfigError, add_config_args, config_from_args
from diod_ray.data.errors import DataError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m diod_ray.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="render the synthetic benchmark into shards")
    add_config_args(g)
    g.add_argument("--split", required=True, help="train, val or test")
    g.add_argument("--out", default=None, help="URI (default: data.uri of the config)")
    g.add_argument("--clips", type=int, default=None, help="videos to render (default: config)")
    g.add_argument("--workers", type=int, default=None, help="process pool size (default: auto)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing split")
    g.add_argument("--no-progress", action="store_true")

    c = sub.add_parser("convert", help="convert a dataset folder into shards")
    add_config_args(c)
    c.add_argument("--layout", required=True, choices=["kitti", "tri-pd", "movi-e", "frames"])
    c.add_argument("--src", required=True, help="source folder")
    c.add_argument("--out", required=True, help="URI: local path or s3://bucket/prefix")
    c.add_argument("--split", default="train", help="train (motion masks), or test / val (with GT)")
    c.add_argument(
        "--moving-flags",
        choices=["derive", "none"],
        default="derive",
        help="eval splits whose source has GT but no moving flags: derive them from GT and "
        "flow (default) or leave them out",
    )
    c.add_argument("--stride", type=int, default=None, help="train clip stride (default: clip_len)")
    c.add_argument("--clips-per-file", type=int, default=16)
    c.add_argument("--overwrite", action="store_true", help="replace an existing split")
    c.add_argument("--no-progress", action="store_true")

    i = sub.add_parser("inspect", help="print a JSON summary of a shard URI")
    add_config_args(i)
    i.add_argument("uri")
    i.add_argument("--split", default=None)
    i.add_argument("--limit", type=int, default=None, help="inspect at most this many clips")
    i.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint URI: also report W_fg coverage of static vs moving GT objects",
    )
    i.add_argument("--weights", choices=["student", "teacher"], default=None)
    i.add_argument(
        "--no-premise",
        action="store_true",
        help="skip the pixel classifiers (object vs background AUC, data/inspection/premise.py)",
    )

    v = sub.add_parser("validate", help="check every shard; non-zero exit on problems")
    add_config_args(v)
    v.add_argument("uri")
    v.add_argument("--split", default=None)
    return p


@command_line("data")
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.command == "generate":
            from diod_ray.data.synthetic.generate import generate_split

            manifest = generate_split(
                cfg,
                args.split,
                uri=args.out,
                clips=args.clips,
                overwrite=args.overwrite,
                progress=not args.no_progress,
                workers=args.workers,
            )
            print(json.dumps({"uri": args.out or cfg.data.uri, **_brief(manifest)}))
        elif args.command == "convert":
            from diod_ray.data.conversion.convert import convert

            manifest = convert(
                args.layout,
                args.src,
                args.out,
                cfg,
                args.split,
                stride=args.stride,
                overwrite=args.overwrite,
                clips_per_file=args.clips_per_file,
                progress=not args.no_progress,
                moving_flags=args.moving_flags,
            )
            print(json.dumps({"uri": args.out, **_brief(manifest)}))
        elif args.command == "inspect":
            from diod_ray.data.inspection.summary import inspect_uri

            bad_checkpoint: tuple = ()  # torch is imported only when a checkpoint is given
            coverage = None
            if args.checkpoint:
                from diod_ray.checkpoint import CheckpointError
                from diod_ray.inference import fg_coverage

                bad_checkpoint = (CheckpointError,)
                coverage = functools.partial(fg_coverage, args.checkpoint, weights=args.weights)
            try:
                summary = inspect_uri(
                    args.uri, args.split, cfg, args.limit, coverage, premise=not args.no_premise
                )
            except bad_checkpoint as exc:  # missing, truncated or foreign checkpoint
                return report("data", exc)
            if "extra" in summary.get("premise", {}):  # scikit-learn missing: one line
                print(f"inspect: {summary['premise']['skipped']}", file=sys.stderr)
            print(json.dumps(summary, indent=1))
        elif args.command == "validate":
            from diod_ray.data.shards.store import validate

            problems = validate(args.uri, args.split, cfg.storage)
            for p in problems:
                print(p)
            print(json.dumps({"uri": args.uri, "problems": len(problems)}))
            return 1 if problems else 0
    except (DataError, ConfigError) as exc:
        return report("data", exc)
    return 0


def _brief(manifest: dict) -> dict:
    keys = ("split", "clips", "num_frames", "height", "width", "has_gt", "files")
    out = {k: manifest[k] for k in keys if k in manifest}
    out["files"] = len(manifest["files"])
    return out


if __name__ == "__main__":
    sys.exit(main())
