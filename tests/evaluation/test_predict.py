"""`python -m diod_ray.predict` on a real .mp4 and a folder of frames, with a saved checkpoint."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from diod_ray.config import load_preset, to_dict
from diod_ray.data.frames import prepare_frames
from diod_ray.inference import predict_video
from diod_ray.model import build_model
from diod_ray.predict import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from diod_ray.checkpoint import save_checkpoint
    from diod_ray.data.synthetic.render import generate_video
    from diod_ray.data.video_io import write_video

    root = tmp_path_factory.mktemp("predict")
    cfg = load_preset("smoke")
    cfg.data.synthetic.frames_per_video = 7
    # a video at another size than the model's 32x64 input
    frames = generate_video(cfg.data.synthetic, 40, 72, "test", 0).frames  # [7,40,72,3]
    mp4 = write_video(root / "clip.mp4", frames, fps=5)
    folder = root / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    torch.manual_seed(0)
    model = build_model(load_preset("smoke")).eval()
    ckpt = root / "ckpt"
    save_checkpoint(ckpt, {"config": to_dict(load_preset("smoke")), "student": model.state_dict()})
    return {"mp4": str(mp4), "folder": str(folder), "ckpt": str(ckpt), "model": model, "root": root}


def test_predict_mp4_writes_masks_overlay_and_sheet(setup, capsys):
    out = setup["root"] / "out_mp4"
    rc = main([setup["mp4"], "--checkpoint", setup["ckpt"], "--out", str(out), "--clip-len", "3"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 7 and summary["clips"] == 3 and summary["carry_state"] is True
    masks = sorted((out / "masks").glob("frame_*.png"))
    assert len(masks) == 7
    m = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED)
    assert m.dtype == np.uint8 and m.shape == (40, 72)  # the input video's size
    assert m.max() <= setup["model"].num_slots
    assert set(np.unique(m).tolist()) - {0} <= set(summary["slots_used"])
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 7
    assert cv2.imread(str(out / "contact_sheet.png")) is not None


def test_masks_are_the_models_argmax(setup):
    """The PNG of frame 0 equals the model's own argmax on the resized first clip."""
    from diod_ray.data.video_io import read_frames

    cfg = load_preset("smoke")
    model = setup["model"]
    video = prepare_frames(read_frames(setup["folder"]), cfg.data.height, cfg.data.width, "rgb")
    ids, fg = predict_video(model, video, clip_len=3)
    with torch.no_grad():
        attn = model(video[:3][None]).attn[0]  # [3,K,h,w]
    raw = attn.argmax(1)
    expect = torch.where(raw == model.bg_index, 0, raw + 1)
    assert torch.equal(ids[:3], expect)
    assert ids.shape[0] == 7 and fg.shape == ids.shape


def test_state_carries_over_between_clips_unless_reset(setup):
    cfg = load_preset("smoke")
    model = setup["model"]
    video = torch.rand(6, 3, cfg.data.height, cfg.data.width) * 2 - 1
    carried, fg_c = predict_video(model, video, 3, carry_state=True)
    reset, fg_r = predict_video(model, video, 3, carry_state=False)
    assert torch.equal(fg_c[:3], fg_r[:3])  # the first clip starts fresh either way
    assert not torch.allclose(fg_c[3:], fg_r[3:])  # the second sees the first clip's state
    with torch.no_grad():  # carried == model(clip 2, state=clip 1's final state)
        first = model(video[:3][None])
        second = model(video[3:][None], state=first.state)
    assert torch.allclose(fg_c[3:], second.fg[0], atol=1e-6)


def test_folder_input_refuses_non_empty_out_unless_overwrite(setup, capsys):
    out = setup["root"] / "out_folder"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = [setup["folder"], "--checkpoint", setup["ckpt"], "--out", str(out), "--reset-per-clip"]
    assert main(args) == 2
    assert "is not empty" in capsys.readouterr().err
    assert not (out / "masks").exists()
    assert main(args + ["--overwrite", "--mask-size", "model"]) == 0
    assert main(args + ["--overwrite", "--mask-size", "model"]) == 0  # replaces its own outputs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["carry_state"] is False and summary["mask_size"] == [32, 64]
    assert (out / "keep.txt").read_text() == "mine"
    assert len(list((out / "masks").glob("*.png"))) == 7
    assert (
        main([str(setup["root"] / "missing.mp4"), "--checkpoint", setup["ckpt"], "--out", str(out)])
        == 2
    )
    assert "missing.mp4 does not exist" in capsys.readouterr().err
