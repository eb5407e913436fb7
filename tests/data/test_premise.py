"""The premise report: fixed pixel classifiers on hand-made frames, and `data inspect` with and
without scikit-learn."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diod_ray.data.inspection import premise

H, W, T, CELL = 48, 64, 2, 16


def _colour(rng) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _clip(rng, object_texture: bool):
    """Frames uint8 [T,H,W,3], GT [T,H,W] and moving flags [T,G+1]. The background is a grid of
    16-px cells, each one colour; objects are grid cells too, with colours from the same
    distribution. ``object_texture``: objects are a fine checkerboard of two such colours (a
    texture the background never has); otherwise they are single-colour cells like the
    background's."""
    frame = np.empty((H, W, 3), np.float64)
    gt = np.zeros((H, W), np.int32)
    yy, xx = np.mgrid[0:CELL, 0:CELL]
    checker = ((yy // 2 + xx // 2) % 2)[..., None]
    k = 0
    for cy in range(0, H, CELL):
        for cx in range(0, W, CELL):
            cell = (slice(cy, cy + CELL), slice(cx, cx + CELL))
            if rng.random() < 0.3:
                k += 1
                gt[cell] = k
                if object_texture:
                    a, b = _colour(rng), _colour(rng)
                    frame[cell] = a * checker + b * (1 - checker)
                    continue
            frame[cell] = _colour(rng)
    frames = np.repeat(frame[None], T, 0)
    frames = np.clip(frames + rng.normal(0, 2, frames.shape), 0, 255).astype(np.uint8)
    moving = np.zeros((T, k + 1), bool)
    moving[:, 1::2] = True  # odd ids move, even ids are static
    return frames, np.repeat(gt[None], T, 0), moving


def _report(object_texture: bool) -> dict:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(7)
    train = [_clip(rng, object_texture) for _ in range(16)]
    scored = [_clip(rng, object_texture) for _ in range(8)]
    return premise.premise_report(iter(train), iter(scored))


def test_texture_separates_where_colour_does_not():
    r = _report(object_texture=True)
    assert r["appearance_auc"] > 0.95 and r["appearance_auc_static"] > 0.95
    assert 0.4 < r["colour_auc"] < 0.6 and 0.4 < r["colour_auc_static"] < 0.6
    assert r["premise_holds"] is True
    assert r["train_clips"] == 16 and r["scored_clips"] == 8


def test_identical_distributions_are_not_separable():
    r = _report(object_texture=False)
    assert 0.4 < r["appearance_auc"] < 0.6 and 0.4 < r["colour_auc"] < 0.6
    assert r["premise_holds"] is False


def test_features_and_verdict():
    frames = np.zeros((1, 20, 20, 3), np.uint8)
    frames[0, :, (np.arange(20) // 2) % 2 == 0] = 255  # 4-px stripes: texture everywhere
    col, app = premise.colour_features(frames), premise.appearance_features(frames)
    assert col.shape == (1, 20, 20, 6) and app.shape == (1, 20, 20, 6 + 3 * len(premise.WINDOWS))
    assert np.array_equal(app[..., :6], col) and app[0, 10, 10, 6:].min() > 0.1
    assert premise.appearance_features(np.zeros((1, 8, 8, 3), np.uint8))[..., 6:].max() == 0
    ok = {"appearance_auc": 0.95, "appearance_auc_static": 0.93, "colour_auc": 0.6}
    assert premise.verdict(ok) is True
    assert premise.verdict({**ok, "colour_auc_static": 0.8}) is False
    assert premise.verdict({**ok, "appearance_auc_static": 0.85}) is False
    assert premise.verdict({"appearance_auc": None, "colour_auc": 0.5}) is None


def test_mask_quality_moving_segment_precision():
    """Share of segments that match a moving GT object (a static object's match does not
    count)."""
    from diod_ray.data.inspection.mask_quality import MaskQuality

    gt = np.zeros((1, 20, 20), np.int32)
    gt[0, 0:5, 0:5] = 1  # moving, found
    gt[0, 10:15, 0:5] = 2  # static, matched by a segment anyway
    motion = np.zeros_like(gt)
    motion[0, 0:5, 0:5] = 1
    motion[0, 10:15, 0:5] = 2
    motion[0, 15:20, 15:20] = 3  # spurious
    q = MaskQuality()
    q.update(gt, np.array([[False, True, False]]), motion)
    s = q.summary()
    assert s["segment_precision"] == pytest.approx(2 / 3)
    assert s["moving_segment_precision"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def small_uri(tmp_path_factory):
    """train (6 videos) and val (4 videos) of the smoke preset."""
    from diod_ray.config import load_preset
    from diod_ray.data.synthetic.generate import generate_split

    uri = str(tmp_path_factory.mktemp("premise") / "shards")
    cfg = load_preset("smoke")
    for split, n in (("train", 6), ("val", 4)):
        generate_split(cfg, split, uri=uri, clips=n, progress=False, workers=1)
    return uri


def _inspect(uri: str, *prelude: str) -> subprocess.CompletedProcess:
    code = "; ".join([
        "import sys", *prelude, "from diod_ray.data.__main__ import main",
        f"sys.exit(main(['inspect', {uri!r}, '--preset', 'smoke']))",
    ])  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_inspect_reports_sizes_mask_precision_and_premise(small_uri):
    pytest.importorskip("sklearn")
    run = _inspect(small_uri)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    cells = out["splits"]["val"]["object_cells"]
    assert cells["min_region_pixels"] == 2 and 0 <= cells["share_at_or_below_min_region"] <= 1
    assert cells["min"] <= cells["p10"] <= cells["median"]
    assert "moving_segment_precision" in out["splits"]["val"]["mask_quality"]
    p = out["premise"]
    assert p["train_split"] == "train" and p["scored_split"] == "val" and p["train_clips"] == 6
    assert 0 <= p["appearance_auc"] <= 1 and isinstance(p["premise_holds"], bool)


def test_inspect_without_scikit_learn_says_which_extra(small_uri):
    """sys.modules['sklearn'] = None makes `import sklearn` fail, as when it is not installed."""
    run = _inspect(small_uri, "sys.modules['sklearn'] = None")
    assert run.returncode == 0, run.stderr
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "premise" in lines[0] and "scikit-learn" in lines[0], run.stderr
    assert "Traceback" not in run.stderr
    out = json.loads(run.stdout)
    assert out["premise"]["extra"] == "premise" and "appearance_auc" not in out["premise"]
    assert "object_cells" in out["splits"]["train"]
