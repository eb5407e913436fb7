"""Fail (exit 1) unless this Python environment is what pyproject.toml pins.

Run by cluster/Dockerfile right after ``pip install .``, so an image whose base brought another
ray, or whose resolver picked another torch, never gets built; tests/platform/test_cluster.py runs it on
the development environment. Checks the installed ``diod_ray`` distribution's own requirements
(its metadata is generated from pyproject.toml), the Python version the project is tested on,
and that the package and its heavy dependencies import.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import sys

from packaging.requirements import Requirement

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


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="python cluster/check_image.py", description=__doc__.splitlines()[0]
    ).parse_args(argv)
    bad = problems()
    if bad:
        print("the environment does not match pyproject.toml:\n  " + "\n  ".join(bad))
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
