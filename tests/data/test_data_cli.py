"""`python -m diod_ray.data` generate / convert / inspect / validate."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from diod_ray.data.__main__ import main
from diod_ray.data.shards import store


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
    assert store.count_clips(uri, "test") == 2

    assert main(["inspect", uri, "--preset", "smoke"]) == 0
    summary = json.loads(capsys.readouterr().out)["splits"]["test"]
    assert summary["clips"] == 2 and summary["T"] == 3
    assert summary["objects_per_clip"]["min"] >= 2  # smoke preset: 2-3 objects
    area = summary["object_area_share"]  # per (frame, object): a part of the frame, never all
    assert 0 < area["min"] <= area["mean"] <= area["max"] < 0.5
    q = summary["mask_quality"]
    assert 0.0 <= q["moving_recall"] <= 1.0 and q["frames"] == 6

    assert main(["validate", uri]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["problems"] == 0


def test_generate_uses_set_overrides(tmp_path, capsys):
    uri = str(tmp_path / "ds")
    argv = ["generate", "--preset", "smoke", "--split", "train", "--out", uri, "--clips", "2"]
    assert main([*argv, "--no-progress", "--set", "data.height=16", "data.width=24"]) == 0
    clip = next(store.iter_clips(uri, "train"))
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


# ------------------------------------------------------------------------------------------
# val split, W_fg headroom report
# ------------------------------------------------------------------------------------------


def test_val_split_generated_from_its_own_streams(tmp_path, capsys):
    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.data.splits import resolve_val_split
    from diod_ray.data.synthetic.generate import ensure_synthetic

    uri = str(tmp_path / "ds")
    cfg = apply_overrides(load_preset("smoke"), {"data.uri": uri})
    ensure_synthetic(cfg, progress=False)  # a fresh folder gets train, test and val
    assert store.list_splits(uri) == ["test", "train", "val"]
    assert store.count_clips(uri, "val") == cfg.data.synthetic.num_val_clips == 4
    val = list(store.iter_clips(uri, "val"))
    test = list(store.iter_clips(uri, "test"))
    assert all(c.gt is not None and c.gt_moving is not None for c in val)
    assert not {c.clip_id for c in val} & {c.clip_id for c in test}
    assert not any(np.array_equal(a.frames, b.frames) for a in val for b in test)
    assert resolve_val_split(cfg) == "val" and capsys.readouterr().err == ""


def test_folder_without_val_falls_back_to_test_with_one_message(tmp_path, capsys):
    import shutil

    import pytest

    from diod_ray.config import apply_overrides, load_preset
    from diod_ray.data.errors import DataError
    from diod_ray.data.splits import resolve_val_split
    from diod_ray.data.synthetic.generate import ensure_synthetic

    uri = str(tmp_path / "old")
    cfg = apply_overrides(load_preset("smoke"), {"data.uri": uri})
    ensure_synthetic(cfg, progress=False)
    shutil.rmtree(tmp_path / "old/val")  # a folder from before val splits existed
    ensure_synthetic(cfg, progress=False)  # an existing folder is left as it is
    assert store.list_splits(uri) == ["test", "train"]
    assert resolve_val_split(cfg) == "test"
    assert resolve_val_split(cfg) == "test"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no 'val' split under {uri}" in err[0]
    assert "first 16 clips of 'test'" in err[0] and "--split val" in err[0]
    # a folder of another benchmark version is refused, naming the manifest and the field
    v2 = apply_overrides(cfg, {"data.synthetic.version": 2})
    with pytest.raises(DataError, match="synthetic.version") as info:
        ensure_synthetic(v2, progress=False)
    assert "train/_manifest.json" in str(info.value)


def test_fg_coverage_counts_hand_built_maps():
    from diod_ray.data.inspection.fg_coverage import FgCoverage

    gt = np.zeros((2, 4, 6), np.int64)
    gt[:, :2, :2] = 1  # moving object
    gt[:, 2:, 4:] = 2  # static object
    fg = np.full((2, 4, 6), 0.1)
    fg[:, :2, :2] = 0.9
    fg[0, 2:, 4:] = 0.6  # static covered in frame 0 only
    fg[1, 2:, 4:] = 0.2
    moving = np.array([[False, True, False]] * 2)
    acc = FgCoverage()
    acc.update(fg, gt, moving)
    s = acc.summary()
    assert s["moving"] == {"objects": 2, "mean_fg": 0.9, "covered_share": 1.0, "contrast": 0.8}
    assert s["static"] == {"objects": 2, "mean_fg": 0.4, "covered_share": 0.5, "contrast": 0.3}
    assert s["headroom_covered_share"] == 0.5 and s["background_mean_fg"] == 0.1


def test_inspect_with_checkpoint_reports_fg_coverage(tmp_path, capsys):
    import torch

    from diod_ray.checkpoint import save_checkpoint
    from diod_ray.config import load_preset, to_dict
    from diod_ray.metrics import downsample_nearest
    from diod_ray.model import build_model

    uri = str(tmp_path / "ds")
    argv = ["generate", "--preset", "smoke", "--split", "val", "--out", uri, "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    cfg = load_preset("smoke")
    torch.manual_seed(0)
    model = build_model(cfg)  # the real model class, untrained weights
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, {"config": to_dict(cfg), "student": model.state_dict()})
    assert (
        main(["inspect", uri, "--preset", "smoke", "--split", "val", "--checkpoint", str(ckpt)])
        == 0
    )
    cov = json.loads(capsys.readouterr().out)["splits"]["val"]["fg_coverage"]
    assert cov["weights"] == "student" and cov["checkpoint"] == str(ckpt)
    # every (frame, object) visible at the attention grid is counted once, by its moving flag
    with torch.inference_mode():
        x = torch.zeros(1, cfg.data.clip_len, 3, cfg.data.height, cfg.data.width)
        grid = model.eval()(x).fg.shape[-2:]
    want = {True: 0, False: 0}
    for c in store.iter_clips(uri, "val"):
        small = downsample_nearest(torch.from_numpy(c.gt.astype(np.int64)), grid).numpy()
        for t, g in enumerate(small):
            for k in np.unique(g[g > 0]):
                want[bool(c.gt_moving[t, k])] += 1
    assert cov["moving"]["objects"] == want[True] and cov["static"]["objects"] == want[False]
    for part in ("moving", "static"):
        assert 0.0 <= cov[part]["mean_fg"] <= 1.0
    assert main(["inspect", uri, "--split", "val", "--checkpoint", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
