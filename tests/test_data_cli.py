"""`python -m diod_ray.data` generate / convert / inspect / validate."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from diod_ray.data import shards
from diod_ray.data.__main__ import main


def test_generate_inspect_validate(tmp_path, capsys):
    uri = str(tmp_path / "ds")
    args = ["--preset", "smoke", "--out", uri, "--no-progress"]
    assert main(["generate", "--split", "test", "--clips", "3", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clips"] == 3 and out["has_gt"] and (out["height"], out["width"]) == (32, 64)
    # the split exists: refused without --overwrite, nothing changed
    before = (tmp_path / "ds/test/_manifest.json").read_text()
    assert main(["generate", "--split", "test", "--clips", "2", *args]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "ds/test/_manifest.json").read_text() == before
    assert main(["generate", "--split", "test", "--clips", "2", "--overwrite", *args]) == 0
    capsys.readouterr()
    assert shards.count_clips(uri, "test") == 2

    assert main(["inspect", uri, "--preset", "smoke"]) == 0
    summary = json.loads(capsys.readouterr().out)["splits"]["test"]
    assert summary["clips"] == 2 and summary["T"] == 3
    assert summary["objects_per_clip"]["min"] >= 2  # smoke preset: 2-3 objects
    q = summary["mask_quality"]
    assert 0.0 <= q["moving_recall"] <= 1.0 and q["frames"] == 6

    assert main(["validate", uri]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["problems"] == 0


def test_generate_uses_set_overrides(tmp_path, capsys):
    uri = str(tmp_path / "ds")
    argv = ["generate", "--preset", "smoke", "--split", "train", "--out", uri, "--clips", "2"]
    assert main([*argv, "--no-progress", "--set", "data.height=16", "data.width=24"]) == 0
    clip = next(shards.iter_clips(uri, "train"))
    assert clip.frames.shape == (3, 16, 24, 3) and clip.motion.dtype == np.int32


def test_convert_frames_layout(tmp_path, capsys):
    import cv2

    for i in range(3):
        d = tmp_path / "src/v/frames"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i}.png"), np.full((16, 24, 3), 60 * i, np.uint8))
    argv = ["convert", "--preset", "smoke", "--layout", "frames", "--src", str(tmp_path / "src")]
    argv += [
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        "--set",
        "data.height=16",
        "data.width=24",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 1


def test_validate_exit_code_on_a_corrupt_shard(tmp_path):
    uri = str(tmp_path / "ds")
    assert (
        main(
            [
                "generate",
                "--preset",
                "smoke",
                "--split",
                "test",
                "--clips",
                "2",
                "--out",
                uri,
                "--no-progress",
            ]
        )
        == 0
    )
    part = tmp_path / "ds/test/part-00000.parquet"
    part.write_bytes(part.read_bytes()[:100])
    proc = subprocess.run(
        [sys.executable, "-m", "diod_ray.data", "validate", uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert str(part) in proc.stdout and "not a readable Parquet file" in proc.stdout
