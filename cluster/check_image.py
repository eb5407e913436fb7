"""Fail (exit 1) unless this Python environment is what pyproject.toml pins.

Run by cluster/Dockerfile right after ``pip install .``, so an image whose base brought another
ray, or whose resolver picked another torch, never gets built; tests/platform/test_cluster.py runs it on
the development environment. Checks the installed ``diod_ray`` distribution's own requirements
(its metadata is generated from pyproject.toml), the Python version the project is tested on,
and that the package and its heavy dependencies import. With ``--lock FILE`` (the image build:
cluster/requirements.lock) also that every locked package is installed at its locked version,
so the second, unhashed install step (torch from PyTorch's index) replaced none of them.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PYTHON = (3, 11)


def problems() -> list[str]:
    out = []
    if sys.version_info[:2] != PYTHON:
        out.append(f"Python {sys.version.split()[0]}, the project is tested on 3.11")
    for text in md.requires("diod_ray") or []:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue  # an optional extra (dev tools)
        try:
            have = md.version(req.name)
        except md.PackageNotFoundError:
            out.append(f"{req.name} is not installed ({req})")
            continue
        if not req.specifier.contains(have, prereleases=True):
            out.append(f"{req.name} {have} installed, pyproject.toml pins {req.specifier}")
    return out


def locked_versions(path: str) -> dict[str, str]:
    """{canonical name: version} of the ``name==version`` lines of a (hashed) lock file."""
    out = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "--")) and "==" in line:
                req = Requirement(line.split(" ")[0].rstrip("\\"))
                (spec,) = req.specifier
                out[canonicalize_name(req.name)] = spec.version
    return out


def lock_problems(path: str) -> list[str]:
    """Locked packages missing, or installed at another version than the lock's."""
    out = []
    for name, version in sorted(locked_versions(path).items()):
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            out.append(f"{name} is not installed ({path} locks {version})")
            continue
        if have != version:
            out.append(f"{name} {have} installed, {path} locks {version}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python cluster/check_image.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--lock", default=None, help="also check the versions of this lock file")
    args = parser.parse_args(argv)
    bad = problems() + (lock_problems(args.lock) if args.lock else [])
    if bad:
        print("the environment does not match the pins:\n  " + "\n  ".join(bad))
        return 1
    import ray
    import torch

    import diod_ray  # noqa: F401

    print(
        f"diod_ray environment: ray {ray.__version__}, torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, Python {sys.version.split()[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
