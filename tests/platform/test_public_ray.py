"""Public Ray APIs only: no Ray-internal module, class or path (``ray._private``,
``ray.<lib>._internal``) named in the project's code or configs (issue 22). Ray moves and removes
those without notice; what the project needs from Ray it takes from public APIs (DataContext
settings, logging levels, documented environment variables)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("diod_ray", "cluster", "sweeps", "benchmarks")
SUFFIXES = {".py", ".yaml", ".yml", ".sh", ".json", ".md", ".toml", ".txt", ".lock", ""}
# a dotted or slashed Ray path with an internal component: ray._private.log,
# ray.data._internal.logging, ray/train/v2/_internal/constants.py, "ray._raylet" ...
RAY_PRIVATE = re.compile(r"\bray(?:[./][A-Za-z0-9_]+)*?[./]_(?:private|internal|raylet)\b")


def _files() -> list[Path]:
    out = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                out.append(path)
    return out


def test_the_pattern_catches_what_it_must():
    for text in (
        "class: ray._private.log.PlainRayHandler",
        "(): ray.data._internal.logging.HiddenRecordFilter",
        "from ray.train.v2._internal.constants import X",
        "see ray/train/v2/_internal/execution/context.py",
        "ray._raylet.RAY_NODE_ID_KEY",
    ):
        assert RAY_PRIVATE.search(text), text
    for text in (
        "ray.data.DataContext",
        "ray/train/v2/api/data_parallel_trainer.py",
        "def _private_helper():",
        "node:__internal_head__",
    ):
        assert not RAY_PRIVATE.search(text), text


def test_no_ray_private_name_in_code_or_configs():
    files = _files()
    assert len(files) > 50
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if RAY_PRIVATE.search(line)
    ]
    assert not hits, "Ray-internal names:\n" + "\n".join(hits)
