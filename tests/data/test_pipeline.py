"""Ray Data pipeline: augmentation (plain numpy), train/eval batches, S3 reading, Ray Train shards."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from diod_ray.config import AugmentConfig, load_config
from diod_ray.data import augment, order, pipeline, shards

# ------------------------------------------------------------------------------------------
# augmentation, no Ray
# ------------------------------------------------------------------------------------------


def _blocks(t=3, h=24, w=48) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose red channel is 40 * the mask id (piecewise constant blocks)."""
    mask = np.zeros((t, h, w), np.int32)
    mask[:, :12, :16] = 1
    mask[:, 12:, 16:40] = 2
    mask[:, :, 40:] = 3
    frames = np.zeros((t, h, w, 3), np.uint8)
    frames[..., 0] = mask * 40
    frames[..., 1] = np.arange(w)[None, None, :] * 5
    return frames, mask


def test_geometry_is_shared_by_frames_and_masks():
    frames, mask = _blocks()
    cfg = AugmentConfig(crop_p=1.0, flip_p=1.0, crop_scale_min=0.5, crop_scale_max=0.6)
    rng = np.random.default_rng(3)
    geom = augment.sample_geometry(rng, 24, 48, cfg)
    assert geom.crop is not None and geom.flip
    f = augment.apply_geometry(frames, geom, nearest=True)
    m = augment.apply_geometry(mask, geom, nearest=True)
    assert f.shape == frames.shape and m.shape == mask.shape
    np.testing.assert_array_equal(f[..., 0] // 40, m)
    # flip: the green ramp now decreases left to right
    assert f[0, 0, 0, 1] > f[0, 0, -1, 1]


def test_flip_only_is_an_exact_mirror():
    frames, mask = _blocks()
    cfg = AugmentConfig(crop_p=0.0, flip_p=1.0)
    geom = augment.sample_geometry(np.random.default_rng(0), 24, 48, cfg)
    np.testing.assert_array_equal(augment.apply_geometry(frames, geom, False), frames[:, :, ::-1])
    np.testing.assert_array_equal(augment.apply_geometry(mask, geom, True), mask[:, :, ::-1])


def test_strong_view_has_the_weak_geometry_and_one_colour_per_clip():
    frames, mask = _blocks()
    frames[1:] = frames[0]  # identical frames -> identical strong frames if params are per clip
    solar = AugmentConfig(crop_p=1.0, flip_p=0.5, jitter_p=0.0, grayscale_p=0.0, solarize_p=1.0)
    weak, strong, m = augment.augment_clip(frames, mask, solar, np.random.default_rng(1))
    expect = np.where(weak >= 128, 255 - weak, weak)  # solarize at 0.5 of the weak view
    assert np.abs(strong.astype(int) - expect.astype(int)).max() <= 1
    full = AugmentConfig(jitter_p=1.0, grayscale_p=0.5, solarize_p=0.5, crop_p=1.0)
    for seed in range(4):
        w, s, m = augment.augment_clip(frames, mask, full, np.random.default_rng(seed))
        assert s.dtype == np.uint8 and s.shape == frames.shape and m.shape == mask.shape
        for t in (1, 2):
            np.testing.assert_array_equal(s[t], s[0])
            np.testing.assert_array_equal(m[t], m[0])
    # colour jitter changes colours but not the mask
    w, s, m = augment.augment_clip(frames, mask, full, np.random.default_rng(7))
    assert set(np.unique(m)) <= {0, 1, 2, 3}


def test_crop_box_follows_scale_and_ratio():
    cfg = AugmentConfig(crop_scale_min=0.75, crop_scale_max=1.0, crop_ratio=2.0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0, h, w = augment.sample_crop_box(rng, 480, 968, cfg)
        assert 0.7 <= h * w / (480 * 968) <= 1.0
        assert abs(w / h - 2.0) < 0.05
        assert y0 + h <= 480 and x0 + w <= 968


def test_colour_jitter_matches_torchvision_brightness_and_grayscale():
    torchvision = pytest.importorskip("torchvision.transforms.v2.functional")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    col = augment.Colour(1.3, None, None, None, (0, 1, 2, 3), grayscale=True, solarize=False)
    ours = augment.apply_colour(x, col)
    t = torch.from_numpy(x).permute(0, 3, 1, 2)
    ref = torchvision.rgb_to_grayscale(torchvision.adjust_brightness(t, 1.3), 3)
    # torchvision quantises to uint8 after each op; we round once at the end
    assert np.abs(ours.astype(int) - ref.permute(0, 2, 3, 1).numpy().astype(int)).max() <= 2


# ------------------------------------------------------------------------------------------
# Ray Data
# ------------------------------------------------------------------------------------------


@pytest.fixture()
def smoke_cfg(smoke_shards):
    """The smoke preset over the session's smoke shards (tests/conftest.py)."""
    return load_config("smoke", sets=[f"data.uri={smoke_shards}"])


def test_map_functions_without_ray(smoke_cfg):
    """The map_batches UDFs on one part file: uint8 views, colour order, padding."""
    part = shards.part_files(smoke_cfg.data.uri, "test")[0]
    table = pq.read_table(part)
    out = pipeline._train_map(table, smoke_cfg)
    n = table.num_rows
    assert out["weak"].shape == (n, 3, 32, 64, 3) and out["weak"].dtype == np.uint8
    assert list(out["clip_id"]) == table.column("clip_id").to_pylist()
    assert out["motion"].shape == (n, 3, 32, 64)
    rgb = pipeline._eval_map(table, smoke_cfg, width=5)
    bgr_cfg = load_config("smoke", sets=[f"data.uri={smoke_cfg.data.uri}", "data.colour_order=bgr"])
    bgr = pipeline._eval_map(table, bgr_cfg, width=5)
    np.testing.assert_array_equal(bgr["frames"], rgb["frames"][..., ::-1])
    assert rgb["gt_moving"].shape == (n, 3, 5) and not rgb["gt_moving"][..., 0].any()


def test_eval_batches_cover_every_clip_once(ray_session, smoke_cfg):
    cfg = smoke_cfg
    stored = {c.clip_id: c for c in shards.iter_clips(cfg.data.uri, "test")}
    seen = []
    for b in pipeline.iter_eval_batches(pipeline.eval_dataset(cfg), cfg, batch_size=3):
        B = len(b["clip_id"])
        assert b["frames"].shape == (B, 3, 3, 32, 64) and b["frames"].dtype == torch.float32
        assert b["gt"].dtype == torch.int64 and b["motion"].dtype == torch.int64
        assert b["gt_moving"].dtype == torch.bool
        for i, cid in enumerate(b["clip_id"]):
            c = stored[cid]
            img = torch.from_numpy(c.frames).permute(0, 3, 1, 2).float() / 127.5 - 1
            torch.testing.assert_close(b["frames"][i], img)
            np.testing.assert_array_equal(b["gt"][i].numpy(), c.gt)
            g = c.gt_moving.shape[1]
            np.testing.assert_array_equal(b["gt_moving"][i, :, :g].numpy(), c.gt_moving)
            assert not b["gt_moving"][i, :, g:].any()
        seen += b["clip_id"]
    assert sorted(seen) == sorted(stored)


def test_train_map_is_independent_of_batch_composition(smoke_cfg):
    """Each clip's window, crop, flip and colour come from (seed, epoch, pass, clip_id): mapping
    the clips one by one or all at once (any number of Ray Data tasks) gives the same views."""
    part = shards.part_files(smoke_cfg.data.uri, "train")[0]
    table = pq.read_table(part)
    whole = pipeline._train_map(table, smoke_cfg, epoch=3)
    for i in range(table.num_rows):
        one = pipeline._train_map(table.slice(i, 1), smoke_cfg, epoch=3)
        assert one["clip_id"][0] == whole["clip_id"][i]
        for k in ("weak", "strong", "motion"):
            np.testing.assert_array_equal(one[k][0], whole[k][i])
    other = pipeline._train_map(table, smoke_cfg, epoch=4)
    assert any(not np.array_equal(other["strong"][i], whole["strong"][i]) for i in range(8))
    keep = frozenset(whole["clip_id"][::2])
    half = pipeline._train_map(table, smoke_cfg, epoch=3, keep=keep, out_frames=3)
    assert list(half["clip_id"]) == list(whole["clip_id"][::2])
    np.testing.assert_array_equal(half["weak"], whole["weak"][::2])


def _stream(cfg, epoch, steps, **kw):
    """(clip ids per batch, the batches) of iter_train_batches."""
    batches = list(pipeline.iter_train_batches(cfg, epoch, steps, "cpu", **kw))
    return [b["clip_id"] for b in batches], batches


def test_train_stream_is_a_function_of_seed_epoch_and_position(ray_session, smoke_cfg):
    """The same (seed, epoch) twice gives identical batches; a second pass fills an epoch longer
    than the shard; skipping k batches gives the tail of the same stream (resume); another
    epoch or run.seed gives another stream."""
    cfg = smoke_cfg
    per_pass = cfg.data.synthetic.num_train_clips // cfg.data.batch_size  # 8 clips / 2 = 4
    steps = per_pass + 1  # forces a second pass
    ids, first = _stream(cfg, 0, steps)
    again_ids, again = _stream(cfg, 0, steps)
    assert ids == again_ids and len(ids) == steps
    for a, b in zip(first, again):
        for k in ("weak", "strong", "motion"):
            assert torch.equal(a[k], b[k]), k
    b0 = first[0]
    assert list(b0["weak"].shape) == [2, 3, 3, 32, 64] and b0["weak"].dtype == torch.float32
    assert list(b0["motion"].shape) == [2, 3, 32, 64] and b0["motion"].dtype == torch.int64
    assert -1.0 <= float(b0["weak"].min()) and float(b0["weak"].max()) <= 1.0
    # one pass shows every clip once
    assert sorted(c for batch in ids[:per_pass] for c in batch) == sorted(
        c.clip_id for c in shards.iter_clips(cfg.data.uri, "train")
    )
    tail_ids, tail = _stream(cfg, 0, steps, skip=3)
    assert tail_ids == ids[3:]
    for a, b in zip(first[3:], tail):
        assert torch.equal(a["strong"], b["strong"])
    assert _stream(cfg, 1, per_pass)[0] != ids[:per_pass]
    seeded = load_config("smoke", sets=[f"data.uri={cfg.data.uri}", "run.seed=1"])
    assert _stream(seeded, 0, per_pass)[0] != ids[:per_pass]


def test_ranks_read_disjoint_clips(ray_session, smoke_cfg):
    """Two ranks of one epoch: the same step count, disjoint clips that together cover the
    split once per pass (1 part file < 2 ranks: each rank keeps every other clip)."""
    cfg = smoke_cfg
    r0, _ = _stream(cfg, 2, 2, rank=0, world=2)
    r1, _ = _stream(cfg, 2, 2, rank=1, world=2)
    assert len(r0) == len(r1) == 2 and all(len(b) == 1 for b in r0 + r1)
    s0, s1 = {c for b in r0 for c in b}, {c for b in r1 for c in b}
    assert not s0 & s1


def test_epoch_files_deal_a_seeded_permutation():
    paths = [f"p{i}" for i in range(5)]
    ids = [[f"c{i}{j}" for j in range(3)] for i in range(5)]
    f0, keep = order.epoch_files(paths, ids, 0, 0, 0, 0, 2)
    f1, _ = order.epoch_files(paths, ids, 0, 0, 0, 1, 2)
    assert keep is None and sorted(f0 + f1) == paths and len(f0) == 3 and len(f1) == 2
    assert order.epoch_files(paths, ids, 0, 0, 0, 0, 2)[0] == f0  # same key, same files
    perms = {tuple(order.epoch_files(paths, ids, 0, e, 0, 0, 1)[0]) for e in range(6)}
    assert len(perms) > 1  # the order changes with the epoch
    few, keep0 = order.epoch_files(paths[:1], ids[:1], 0, 0, 0, 0, 2)
    _, keep1 = order.epoch_files(paths[:1], ids[:1], 0, 0, 0, 1, 2)
    assert few == ["p0"] and keep0 | keep1 == set(ids[0]) and not keep0 & keep1


def test_shuffle_buffer_is_seeded_and_keeps_every_item():
    items = list(range(50))
    a = list(order.shuffle_buffer(iter(items), 8, order.rng(1, 2)))
    b = list(order.shuffle_buffer(iter(items), 8, order.rng(1, 2)))
    c = list(order.shuffle_buffer(iter(items), 8, order.rng(1, 3)))
    assert a == b != c and sorted(a) == items and a != items
    assert a[0] < 9  # a buffer of 8 reaches at most 8 items ahead


def test_pipeline_reads_from_s3(ray_session, smoke_cfg, s3_bucket):
    uri = f"s3://{s3_bucket}/smoke"
    shards.write_split(uri, "test", shards.iter_clips(smoke_cfg.data.uri, "test"))
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    ids = [
        cid
        for b in pipeline.iter_eval_batches(pipeline.eval_dataset(cfg), cfg, 4)
        for cid in b["clip_id"]
    ]
    assert sorted(ids) == sorted(c.clip_id for c in shards.iter_clips(smoke_cfg.data.uri, "test"))


def test_too_few_clips_for_a_batch(ray_session, tmp_path):
    from test_shards import make_clip

    uri = str(tmp_path / "ds")
    shards.write_split(uri, "train", [make_clip(0, h=32, w=64, gt=False)])
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    with pytest.raises(ValueError, match="fewer clips than one batch"):
        list(pipeline.iter_train_batches(cfg, 0, 2))
