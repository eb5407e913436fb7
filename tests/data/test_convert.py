"""Converters: tiny fake trees in the on-disk layouts of the paper datasets and plain folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from diod_ray.config import load_config
from diod_ray.data.conversion.convert import convert, relabel_video
from diod_ray.data.shards import store


def _cfg(h, w, t, **extra):
    sets = [f"data.height={h}", f"data.width={w}", f"data.clip_len={t}", "data.min_mask_pixels=0"]
    return load_config("smoke", sets=sets + [f"{k}={v}" for k, v in extra.items()])


def _scene(t: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured frame with a square (id 7) moving right 2 px per frame."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3)).astype(np.uint8), (0, 0), 1.5)
    frames, masks = [], []
    for i in range(t):
        f, m = base.copy(), np.zeros((h, w), np.uint16)
        y, x = h // 2 - 4, 4 + 2 * i
        f[y : y + 8, x : x + 8] = (250, 30, 30)
        m[y : y + 8, x : x + 8] = 7
        frames.append(f)
        masks.append(m)
    return np.stack(frames), np.stack(masks)


def _write(folder: Path, names, images) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, img in zip(names, images):
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        assert cv2.imwrite(str(folder / n), img)


def test_tri_pd_resize_crop_and_masks(tmp_path):
    frames, masks = _scene(4, 40, 80)
    names = [f"{i:018d}.png" for i in range(4)]
    for cam in ("camera_01", "camera_02"):  # camera_02 is not used by the reference
        _write(tmp_path / "src/scene_000001/rgb" / cam, names, frames)
        _write(tmp_path / "src/scene_000001/est_masks" / cam, names, masks)
        _write(tmp_path / "src/scene_000001/ari_masks" / cam, names, masks)
    # 40x80 -> 0.5 resize -> 20x40 -> top round(20 * 128/608) = 4 rows dropped -> 16x40
    cfg = _cfg(16, 40, 2)
    uri = str(tmp_path / "out")
    convert("tri-pd", str(tmp_path / "src"), uri, cfg, "train", progress=False)
    clips = sorted(store.iter_clips(uri, "train"), key=lambda c: c.frame_start)
    assert [c.clip_id for c in clips] == [
        "scene_000001/camera_01:00000",
        "scene_000001/camera_01:00002",
    ]
    half = cv2.resize(frames[0], (40, 20), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(clips[0].frames[0], half[4:])
    assert set(np.unique(clips[0].motion)) == {0, 1}  # id 7 relabelled per frame to 1
    assert clips[0].gt is None
    convert("tri-pd", str(tmp_path / "src"), uri, cfg, "test", progress=False)
    test = list(store.iter_clips(uri, "test"))
    assert len(test) == 2 and all(c.gt is not None and c.gt.max() == 1 for c in test)


def test_kitti_train_drives_and_test_images(tmp_path):
    frames, masks = _scene(3, 16, 48)
    names = [f"{i:010d}.png" for i in range(3)]
    _write(tmp_path / "train/2011_09_26_drive_0001_sync/image_02/data", names, frames)
    _write(tmp_path / "train/2011_09_26_drive_0001_sync/image_02/raft_seg", names, masks)
    _write(tmp_path / "train/2011_09_26_drive_0001_sync/image_03/data", names, frames)
    _write(tmp_path / "train/2011_09_26_drive_0001_sync/image_03/raft_seg", names, masks)
    _write(tmp_path / "test/rgb", names[:2], frames[:2])
    _write(tmp_path / "test/instance", names[:2], masks[:2])
    cfg = _cfg(8, 24, 3)
    uri = str(tmp_path / "out")
    convert("kitti", str(tmp_path / "train"), uri, cfg, "train", progress=False)
    convert("kitti", str(tmp_path / "test"), uri, cfg, "test", progress=False)
    train = list(store.iter_clips(uri, "train"))
    assert len(train) == 2 and train[0].frames.shape == (3, 8, 24, 3)
    assert {c.video_id for c in train} == {
        "2011_09_26_drive_0001_sync/image_02",
        "2011_09_26_drive_0001_sync/image_03",
    }
    test = list(store.iter_clips(uri, "test"))
    assert len(test) == 2 and test[0].frames.shape == (1, 8, 24, 3)  # single images: T = 1
    assert test[0].gt.max() == 1 and test[0].motion.max() == 0
    assert store.validate(uri) == []


def test_kitti_official_instance_encoding_is_decoded(tmp_path):
    from diod_ray.data.conversion.convert import decode_kitti_instances

    m = np.full((4, 6), 7 * 256, dtype=np.uint16)  # road: a stuff class, instance 0
    m[0, :2] = 26 * 256 + 1  # car 1
    m[1, :2] = 26 * 256 + 2  # car 2
    m[3, 4:] = 24 * 256 + 1  # person 1: same instance number as car 1, another object
    m[2, 5] = 23 * 256  # sky: stuff
    ids = decode_kitti_instances(m)
    assert ids.dtype == np.int32 and set(np.unique(ids)) == {0, 1, 2, 3}
    assert ids[2, 5] == 0 and ids[2, 0] == 0
    assert len({ids[0, 0], ids[1, 0], ids[3, 5]}) == 3  # three distinct objects
    plain = np.array([[0, 1], [2, 2]], dtype=np.uint8)  # DOM's converted ids stay as they are
    np.testing.assert_array_equal(decode_kitti_instances(plain), plain)

    # end to end through the converter: a 16-bit official PNG gives two objects
    frames, _ = _scene(1, 16, 48)
    official = np.full((16, 48), 7 * 256, dtype=np.uint16)
    official[2:8, 2:10] = 26 * 256 + 1
    official[9:15, 30:44] = 26 * 256 + 2
    _write(tmp_path / "test/rgb", ["000000_10.png"], frames)
    _write(tmp_path / "test/instance", ["000000_10.png"], official[None])
    uri = str(tmp_path / "out")
    convert("kitti", str(tmp_path / "test"), uri, _cfg(16, 48, 3), "test", progress=False)
    (clip,) = list(store.iter_clips(uri, "test"))
    assert set(np.unique(clip.gt)) == {0, 1, 2}


def test_movi_e_arrays_with_flow_motion_masks(tmp_path):
    frames, masks = _scene(6, 32, 32)
    v = tmp_path / "src/video_0000"
    v.mkdir(parents=True)
    np.save(v / "rgb.npy", frames)
    np.save(v / "segment.npy", masks[..., None].astype(np.uint8))
    cfg = _cfg(32, 32, 3)
    uri = str(tmp_path / "out")
    convert("movi-e", str(tmp_path / "src"), uri, cfg, "test", progress=False)
    clips = sorted(store.iter_clips(uri, "test"), key=lambda c: c.frame_start)
    assert [c.frame_start for c in clips] == [0, 3]  # non-overlapping for eval
    assert clips[0].gt.max() == 1
    # motion masks from optical flow find the moving square
    moving = clips[0].motion[0] > 0
    square = clips[0].gt[0] == 1
    assert (moving & square).sum() >= 0.5 * square.sum()


def test_frames_folders_and_mp4(tmp_path):
    frames, masks = _scene(4, 32, 48)
    names = [f"{i:05d}.png" for i in range(4)]
    _write(tmp_path / "src/walk/frames", names, frames)
    _write(tmp_path / "src/walk/motion", names, masks)
    _write(tmp_path / "src/walk/gt", names, masks)
    writer = cv2.VideoWriter(
        str(tmp_path / "src/drive.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (48, 32)
    )
    if not writer.isOpened():
        pytest.skip("no mp4 encoder in this OpenCV build")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    cfg = _cfg(32, 48, 2)
    uri = str(tmp_path / "out")
    convert("frames", str(tmp_path / "src"), uri, cfg, "train", stride=1, progress=False)
    clips = list(store.iter_clips(uri, "train"))
    by_video = {}
    for c in clips:
        by_video.setdefault(c.video_id, []).append(c.frame_start)
    assert sorted(by_video) == ["drive", "walk"]
    assert sorted(by_video["walk"]) == [0, 1, 2]  # stride 1 on a train split
    walk = next(c for c in clips if c.video_id == "walk" and c.frame_start == 0)
    np.testing.assert_array_equal(walk.frames, frames[:2])
    np.testing.assert_array_equal(walk.motion > 0, masks[:2] > 0)


def test_relabel_video_keeps_ids_consistent():
    m = np.zeros((3, 10, 10), np.int32)
    m[0, :1, :3] = 5  # 3 px: too small to get an id in frame 0
    m[1, :5, :5] = 5  # 25 px: gets id 2 (after 9)
    m[0, 5:, 5:] = 9  # 25 px: id 1
    m[2, :1, :1] = 5  # small again, keeps its id
    out = relabel_video(m, first_min_pixels=10)
    assert out[0, 0, 0] == 0 and out[0, 9, 9] == 1
    assert out[1, 0, 0] == 2 and out[2, 0, 0] == 2


def _panning_scene(t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """A camera panning 2 px/frame over a textured world with a static square (id 1, moves in
    the image with the background) and a square moving 2 px/frame in the world (id 2)."""
    rng = np.random.default_rng(3)
    world = cv2.GaussianBlur(rng.integers(0, 255, (h, w + 4 * t, 3)).astype(np.uint8), (0, 0), 1.2)
    tex = cv2.GaussianBlur(rng.integers(0, 255, (10, 10, 3)).astype(np.uint8), (0, 0), 0.8)
    frames, masks = [], []
    for i in range(t):
        canvas = world.copy()
        ids = np.zeros(world.shape[:2], np.uint16)
        for k, (y, x) in ((1, (6, 30)), (2, (h - 16, 12 + 2 * i))):
            canvas[y : y + 10, x : x + 10] = tex // k
            ids[y : y + 10, x : x + 10] = k
        frames.append(canvas[:, 2 * i : 2 * i + w])
        masks.append(ids[:, 2 * i : 2 * i + w])
    return np.stack(frames), np.stack(masks)


def test_val_split_with_derived_moving_flags(tmp_path):
    """An eval split named val converts like test; flags derived from GT + camera-compensated
    flow: the square moving in the world is moving, the one fixed in the world is not although
    both move in the image."""
    frames, masks = _panning_scene(5, 48, 64)
    names = [f"{i:05d}.png" for i in range(5)]
    _write(tmp_path / "src/pan/frames", names, frames)
    _write(tmp_path / "src/pan/gt", names, masks)
    cfg = _cfg(48, 64, 5)
    uri = str(tmp_path / "out")
    m = convert("frames", str(tmp_path / "src"), uri, cfg, "val", progress=False)
    assert m["has_gt"] and m["moving_flags"] == "derive"
    (clip,) = store.iter_clips(uri, "val")
    assert clip.gt_moving.shape == (5, 3)
    assert clip.gt_moving[:, 2].all() and not clip.gt_moving[:, 1].any()
    assert not clip.gt_moving[:, 0].any()
    convert("frames", str(tmp_path / "src"), uri, cfg, "test", progress=False, moving_flags="none")
    (plain,) = store.iter_clips(uri, "test")
    assert plain.gt_moving is None


def test_derived_flags_on_synthetic_clips_match_the_truth():
    """Where the truth is known (synthetic v2, camera motion included) the derived flags agree
    with it on most visible objects (measured over 64 clips in docs/data.md)."""
    from diod_ray.config import SyntheticConfig
    from diod_ray.data.conversion.moving_flags import derive_moving, flag_agreement
    from diod_ray.data.synthetic.render import generate_video

    cfg = _cfg(64, 128, 5)
    counts = np.zeros(4, np.int64)
    for i in range(6):
        v = generate_video(SyntheticConfig(version=2, camera_motion_share=0.6), 64, 128, "val", i)
        counts += flag_agreement(derive_moving(v.frames, v.gt, cfg.data.flow), v.moving, v.gt)
    tp, fp, fn, tn = counts
    assert tp + fn > 30 and fp + tn > 20
    assert tp / (tp + fp) > 0.9 and tp / (tp + fn) > 0.7
