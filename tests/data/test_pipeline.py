"""Ray Data pipeline: augmentation (plain numpy), train/eval batches, S3 reading, Ray Train shards,
manifest-planned reads (clip ids in the manifest, old manifests), narrow masks."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from diod_ray.config import AugmentConfig, load_config
from diod_ray.data.shards import store
from diod_ray.data.streaming import augment, order
from diod_ray.data.streaming.batches import iter_eval_batches, iter_train_batches, train_batches
from diod_ray.data.streaming.datasets import _eval_map, _train_map, eval_dataset, train_index

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
    part = store.part_files(smoke_cfg.data.uri, "test")[0]
    table = pq.read_table(part)
    out = _train_map(table, smoke_cfg)
    n = table.num_rows
    assert out["weak"].shape == (n, 3, 32, 64, 3) and out["weak"].dtype == np.uint8
    assert list(out["clip_id"]) == table.column("clip_id").to_pylist()
    assert out["motion"].shape == (n, 3, 32, 64)
    rgb = _eval_map(table, smoke_cfg, width=5)
    bgr_cfg = load_config("smoke", sets=[f"data.uri={smoke_cfg.data.uri}", "data.colour_order=bgr"])
    bgr = _eval_map(table, bgr_cfg, width=5)
    np.testing.assert_array_equal(bgr["frames"], rgb["frames"][..., ::-1])
    assert rgb["gt_moving"].shape == (n, 3, 5) and not rgb["gt_moving"][..., 0].any()


def test_eval_batches_cover_every_clip_once(ray_session, smoke_cfg):
    cfg = smoke_cfg
    stored = {c.clip_id: c for c in store.iter_clips(cfg.data.uri, "test")}
    seen = []
    for b in iter_eval_batches(eval_dataset(cfg), cfg, batch_size=3):
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
    part = store.part_files(smoke_cfg.data.uri, "train")[0]
    table = pq.read_table(part)
    whole = _train_map(table, smoke_cfg, epoch=3)
    for i in range(table.num_rows):
        one = _train_map(table.slice(i, 1), smoke_cfg, epoch=3)
        assert one["clip_id"][0] == whole["clip_id"][i]
        for k in ("weak", "strong", "motion"):
            np.testing.assert_array_equal(one[k][0], whole[k][i])
    other = _train_map(table, smoke_cfg, epoch=4)
    assert any(not np.array_equal(other["strong"][i], whole["strong"][i]) for i in range(8))


def _stream(cfg, epoch, steps, **kw):
    """(clip ids per batch, the batches) of iter_train_batches."""
    batches = list(iter_train_batches(cfg, epoch, steps, "cpu", **kw))
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
        c.clip_id for c in store.iter_clips(cfg.data.uri, "train")
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


def test_pass_reads_deal_a_seeded_permutation():
    counts = [3, 3, 3, 3, 2]
    r0 = order.pass_reads(counts, 0, 0, 0, 0, 2)
    r1 = order.pass_reads(counts, 0, 0, 0, 1, 2)
    files = sorted(r.file for r in r0 + r1)
    assert files == [0, 1, 2, 3, 4] and len(r0) == 3 and len(r1) == 2
    assert all(r.first == 0 and r.step == 1 and r.count == counts[r.file] for r in r0 + r1)
    assert order.pass_reads(counts, 0, 0, 0, 0, 2) == r0  # same key, same reads
    perms = {tuple(r.file for r in order.pass_reads(counts, 0, e, 0, 0, 1)) for e in range(6)}
    assert len(perms) > 1  # the order changes with the epoch
    # fewer files than ranks: every rank reads every file and keeps every W-th clip of the stream
    few = [3, 2]
    rows = {}
    for rank in range(3):
        for r in order.pass_reads(few, 0, 0, 0, rank, 3):
            rows.setdefault(rank, []).extend(
                (r.file, j) for j in range(r.first, few[r.file], r.step)[: r.count]
            )
    got = sorted(x for v in rows.values() for x in v)
    assert got == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert sum(len(v) for v in rows.values()) == 5


def test_epoch_plan_reads_only_what_the_batches_need():
    """A pass is cut after the clips its batches can reach (buffer + batches x batch size);
    passes before a resume point are not read at all; the rest is replayed."""
    counts = [4] * 6  # 24 clips, 1 rank, batches of 2, buffer of 3
    one = order.epoch_plan(counts, 0, 0, steps=2, batch=2, buffer=3, rank=0, world=1)
    assert len(one) == 1 and one[0].batches == 2 and one[0].clips == 3 + 4
    assert sum(r.count for r in one[0].reads) == 7 and len(one[0].reads) == 2
    # 30 steps: pass 0 gives 12 batches (all its clips), pass 1 another 12, pass 2 six
    long = order.epoch_plan(counts, 0, 0, steps=30, batch=2, buffer=3, rank=0, world=1)
    assert [p.batches for p in long] == [12, 12, 6] and [p.clips for p in long] == [24, 24, 15]
    resumed = order.epoch_plan(counts, 0, 0, steps=30, batch=2, buffer=3, rank=0, world=1, skip=14)
    assert [p.pass_ for p in resumed] == [1, 2] and [p.skip for p in resumed] == [2, 0]
    with pytest.raises(order.TooFewClips):
        order.epoch_plan([1], 0, 0, steps=1, batch=2, buffer=3, rank=0, world=1)


def test_shuffle_buffer_is_seeded_and_keeps_every_item():
    items = list(range(50))
    a = list(order.shuffle_buffer(iter(items), 8, order.rng(1, 2)))
    b = list(order.shuffle_buffer(iter(items), 8, order.rng(1, 2)))
    c = list(order.shuffle_buffer(iter(items), 8, order.rng(1, 3)))
    assert a == b != c and sorted(a) == items and a != items
    assert a[0] < 9  # a buffer of 8 reaches at most 8 items ahead


def test_pipeline_reads_from_s3(ray_session, smoke_cfg, s3_bucket):
    uri = f"s3://{s3_bucket}/smoke"
    store.write_split(uri, "test", store.iter_clips(smoke_cfg.data.uri, "test"))
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    ids = [cid for b in iter_eval_batches(eval_dataset(cfg), cfg, 4) for cid in b["clip_id"]]
    assert sorted(ids) == sorted(c.clip_id for c in store.iter_clips(smoke_cfg.data.uri, "test"))


def test_run_stream_continues_across_epochs(ray_session, smoke_cfg):
    """One Dataset for three epochs (train_batches, as the loop uses it) gives the batches of
    three one-epoch streams; asking for another position builds a stream there."""
    cfg = smoke_cfg
    run = [_ids(train_batches(cfg, e, 3, end_epoch=3)) for e in range(3)]
    alone = [_ids(iter_train_batches(cfg, e, 3)) for e in range(3)]
    assert run == alone
    assert _ids(train_batches(cfg, 1, 3, skip=1, end_epoch=3)) == alone[1][1:]


def _ids(batches) -> list[list[str]]:
    return [b["clip_id"] for b in batches]


def _drop_manifest_keys(uri: str, split: str, *keys: str) -> None:
    """Rewrite a split's manifest as one written before ``keys`` existed."""
    path = f"{uri}/{split}/{store.MANIFEST}"
    m = json.load(open(path))
    for k in keys:
        m.pop(k, None)
        for f in m["files"]:
            f.pop(k, None)
    json.dump(m, open(path, "w"))


def test_start_up_reads_the_manifest_not_the_footers(tmp_path):
    """Clip ids and counts come from the manifest: with every part file truncated, the train
    index is still built (no footer opened); a manifest without clip ids (written before them)
    falls back to the footers, here failing on the truncated file it had to open."""
    from test_shards import make_clip

    uri = str(tmp_path / "ds")
    store.write_split(uri, "train", [make_clip(i) for i in range(5)], clips_per_file=2)
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    whole = train_index(cfg)
    assert not whole.from_footers and whole.counts == [2, 2, 1]
    assert whole.clip_ids == tuple(
        tuple(pq.read_table(p, columns=["clip_id"]).column(0).to_pylist()) for p in whole.paths
    )
    _drop_manifest_keys(uri, "train", "clip_ids", "max_motion_id")
    old = train_index(cfg)  # the old behaviour: every footer read once
    assert old.from_footers and old.clip_ids == whole.clip_ids and old.counts == whole.counts
    assert old.motion_dtype == np.uint16  # no max_motion_id: the wide dtype
    clips = [make_clip(i) for i in range(10, 15)]  # other clips: not the cached index
    store.write_split(uri, "train", clips, clips_per_file=2, overwrite=True)
    listed = train_index(cfg)
    for p in listed.paths:
        data = open(p, "rb").read()
        open(p, "wb").write(data[: len(data) // 2])
    assert train_index(cfg).clip_ids == listed.clip_ids  # no footer opened
    assert [c for f in listed.clip_ids for c in f] == [c.clip_id for c in clips]
    _drop_manifest_keys(uri, "train", "clip_ids")
    with pytest.raises(store.ShardFormatError, match="not a readable Parquet file"):
        train_index(cfg)


def test_old_manifest_gives_the_same_batches(ray_session, smoke_cfg, tmp_path):
    """A split whose manifest predates clip ids and max_motion_id (and whose masks are uint16,
    as every shard written before) trains on exactly the batches of a current one."""
    import shutil

    from diod_ray.data.shards import rows

    old_uri = str(tmp_path / "old")
    shutil.copytree(smoke_cfg.data.uri, old_uri)
    # rewrite the train parts with uint16 masks, as shards were written before
    for p in store.part_files(old_uri, "train"):
        t = pq.read_table(p)
        wide = [
            [np.frombuffer(b, np.uint8).astype("<u2").tobytes() for b in m]
            for m in t.column("motion").to_pylist()
        ]
        t = t.set_column(t.schema.get_field_index("motion"), "motion", pa.array(wide))
        pq.write_table(t.replace_schema_metadata(rows.SCHEMA.metadata), p)
    _drop_manifest_keys(old_uri, "train", "clip_ids", "max_motion_id")
    old_cfg = load_config("smoke", sets=[f"data.uri={old_uri}"])
    new = list(iter_train_batches(smoke_cfg, 0, 3))
    old = list(iter_train_batches(old_cfg, 0, 3))
    assert _ids(new) == _ids(old)
    for a, b in zip(new, old):
        assert torch.equal(a["motion"], b["motion"]) and torch.equal(a["strong"], b["strong"])


def test_masks_stored_no_wider_than_their_ids(tmp_path):
    """Mask frames whose ids are all < 256 are stored as uint8 (H*W bytes), wider ones as uint16;
    both decode to the same ids, and the pipeline's blocks carry the split's narrowest dtype."""
    from test_shards import make_clip

    from diod_ray.data.shards import rows

    def narrow(i: int) -> rows.Clip:
        c = make_clip(i)
        return rows.Clip(c.clip_id, c.video_id, c.frames, c.motion % 200, c.gt, c.gt_moving)

    c = narrow(0)
    h, w = c.motion.shape[1:]
    row = rows.encode_clip(c)
    assert all(len(b) == h * w for b in row["motion"] + row["gt"])
    back = rows.decode_row(row)
    np.testing.assert_array_equal(back.motion, c.motion)
    np.testing.assert_array_equal(back.gt, c.gt)
    wide = make_clip(0)  # ids up to 299
    row = rows.encode_clip(wide)
    assert all(len(b) == 2 * h * w for b in row["motion"]) and len(row["gt"][0]) == h * w
    np.testing.assert_array_equal(rows.decode_row(row).motion, wide.motion)
    png = rows.encode_clip(c, mask_codec="png")
    np.testing.assert_array_equal(rows.decode_row(png).motion, c.motion)
    uri = str(tmp_path / "ds")
    m = store.write_split(uri, "train", [c, narrow(1)])
    assert m["max_motion_id"] == max(int(c.motion.max()), int(narrow(1).motion.max())) < 256
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    assert train_index(cfg).motion_dtype == np.uint8
    table = pq.read_table(store.part_files(uri, "train")[0])
    out = _train_map(table, cfg, 0, 0, 0, np.uint8)
    assert out["motion"].dtype == np.uint8
    wide_uri = str(tmp_path / "wide")
    store.write_split(wide_uri, "train", [wide])
    wide_cfg = load_config("smoke", sets=[f"data.uri={wide_uri}"])
    assert train_index(wide_cfg).motion_dtype == np.uint16


def test_eval_blocks_are_whole_batches_in_stored_order(ray_session, tmp_path):
    """eval_dataset(batch_size=B): blocks of exactly B clips across part-file boundaries (the
    last shorter), in stored order; ``limit`` keeps the first clips."""
    from test_shards import make_clip

    uri = str(tmp_path / "ds")
    store.write_split(uri, "test", [make_clip(i) for i in range(7)], clips_per_file=3)
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    stored = [c.clip_id for c in store.iter_clips(uri, "test")]
    blocks = list(eval_dataset(cfg, batch_size=2).iter_batches(batch_size=None))
    assert [len(b["clip_id"]) for b in blocks] == [2, 2, 2, 1]
    assert [c for b in blocks for c in b["clip_id"]] == stored
    assert blocks[0]["gt"].dtype == np.uint8
    head = list(eval_dataset(cfg, batch_size=2, limit=4).iter_batches(batch_size=None))
    assert [c for b in head for c in b["clip_id"]] == stored[:4]


def test_too_few_clips_for_a_batch(ray_session, tmp_path):
    from test_shards import make_clip

    uri = str(tmp_path / "ds")
    store.write_split(uri, "train", [make_clip(0, h=32, w=64, gt=False)])
    cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    with pytest.raises(ValueError, match="fewer clips than one batch"):
        list(iter_train_batches(cfg, 0, 2))
