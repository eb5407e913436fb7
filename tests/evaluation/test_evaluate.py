"""evaluate_model and `python -m diod_ray.evaluate` on real smoke shards and a real checkpoint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import adjusted_rand_score

from diod_ray.config import apply_overrides, load_preset, to_dict
from diod_ray.evaluate import main
from diod_ray.inference import evaluate_model, slot_labels
from diod_ray.model import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Smoke-preset test shards (real generator, real optical flow) and a saved checkpoint."""
    from diod_ray.checkpoint import save_checkpoint
    from diod_ray.data.synthetic.generate import generate_split

    root = tmp_path_factory.mktemp("eval")
    cfg = load_preset("smoke")
    cfg.data.uri = str(root / "data")
    generate_split(cfg, "test", progress=False, workers=1)
    torch.manual_seed(0)
    model = build_model(cfg)
    # a few train-mode forwards give BatchNorm non-trivial running statistics
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, 3, 3, cfg.data.height, cfg.data.width))
    ckpt = root / "ckpt"
    save_checkpoint(ckpt, {"config": to_dict(cfg), "student": model.state_dict()})
    return cfg, model.eval(), str(ckpt)


def _clips(cfg):
    from diod_ray.data.shards.store import iter_clips

    return list(iter_clips(cfg.data.uri, "test", cfg.storage))


def _batches(cfg, clips, bs):
    for i in range(0, len(clips), bs):
        cs = clips[i : i + bs]
        frames = torch.from_numpy(np.stack([c.frames for c in cs]))
        width = max(c.gt_moving.shape[1] for c in cs)
        moving = np.zeros((len(cs), cs[0].gt.shape[0], width), bool)
        for j, c in enumerate(cs):
            moving[j, :, : c.gt_moving.shape[1]] = c.gt_moving
        yield {
            "frames": frames.permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0,
            "gt": torch.from_numpy(np.stack([c.gt for c in cs]).astype(np.int64)),
            "gt_moving": torch.from_numpy(moving),
            "motion": torch.from_numpy(np.stack([c.motion for c in cs]).astype(np.int64)),
            "clip_id": [c.clip_id for c in cs],
        }


def test_slot_labels_background_zero_others_shifted():
    attn = torch.zeros(1, 1, 4, 1, 4)
    for k in range(4):
        attn[0, 0, k, 0, k] = 1.0
    assert slot_labels(attn, bg_index=3)[0, 0, 0].tolist() == [1, 2, 3, 0]
    assert slot_labels(attn, bg_index=0)[0, 0, 0].tolist() == [0, 2, 3, 4]


def test_clean_protocol_matches_an_independent_per_clip_computation(smoke):
    cfg, model, _ = smoke
    clips = _clips(cfg)
    result = evaluate_model(model, _batches(cfg, clips, 3), cfg, "clean")
    # independent: model per clip, argmax, GT by torch's nearest interpolation, sklearn's ARI
    alls, tp, n_pred, n_gt = [], 0, 0, 0
    with torch.no_grad():
        for b in _batches(cfg, clips, 1):
            out = model(b["frames"])
            ids = out.attn[0].argmax(1)  # [T,h,w]
            gt = F.interpolate(b["gt"][0, :, None].float(), size=ids.shape[-2:], mode="nearest")
            g, p = gt[:, 0].long().numpy(), ids.numpy()
            alls.append(adjusted_rand_score(g.ravel(), p.ravel()))
            for t in range(g.shape[0]):
                for gi in set(np.unique(g[t])) - {0}:
                    for pi in set(np.unique(p[t])) - {model.bg_index}:
                        inter = np.sum((g[t] == gi) & (p[t] == pi))
                        tp += inter / np.sum((g[t] == gi) | (p[t] == pi)) > 0.5
                n_gt += len(set(np.unique(g[t])) - {0})
                n_pred += len(set(np.unique(p[t])) - {model.bg_index})
    assert result["clips"] == len(clips) and result["frames"] == sum(len(c.frames) for c in clips)
    assert result["all_ari"] == pytest.approx(np.mean(alls), abs=1e-9)
    assert (result["tp"], result["n_pred"], result["n_gt"]) == (tp, n_pred, n_gt)
    assert result["n_static_gt"] + result["n_moving_gt"] == n_gt
    # batching does not change anything in eval mode
    again = evaluate_model(model, _batches(cfg, clips, 1), cfg, "clean")
    for k in ("fg_ari", "all_ari", "f1", "mbo", "static_recall", "moving_recall"):
        assert again[k] == pytest.approx(result[k], nan_ok=True)


def test_reference_protocol_uses_clip_batchnorm_and_leaves_the_model_untouched(smoke):
    cfg, model, _ = smoke
    clips = _clips(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = evaluate_model(model, _batches(cfg, clips, 4), cfg, "reference")
    assert not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # one forward per clip: the batch size cannot change the numbers even with batch statistics
    ref1 = evaluate_model(model, _batches(cfg, clips, 1), cfg, "reference")
    assert ref1["all_ari"] == pytest.approx(ref["all_ari"], nan_ok=True)
    assert ref["batchnorm"] == "batch statistics" and ref["clip_len"] == 3  # smoke clips: 3 < 5
    # a 7-frame stored clip is cut into the reference's 5-frame window + a 2-frame tail
    long = {
        "frames": torch.rand(2, 7, 3, cfg.data.height, cfg.data.width) * 2 - 1,
        "gt": torch.randint(0, 4, (2, 7, cfg.data.height, cfg.data.width)),
    }
    cut = evaluate_model(model, [long], cfg, "reference")
    assert (cut["clips"], cut["frames"], cut["clip_len"]) == (4, 14, 5)
    # batch statistics differ from running statistics: the predictions are not the clean ones
    clean = evaluate_model(model, _batches(cfg, clips, 4), cfg, "clean")
    assert (ref["n_pred"], ref["mbo"]) != (clean["n_pred"], clean["mbo"])


def test_cli_prints_json_writes_out_and_examples_and_refuses_overwrite(
    smoke, ray_session, tmp_path, capsys
):
    cfg, _, ckpt = smoke
    out = tmp_path / "res.json"
    args = ["--checkpoint", ckpt, "--data", cfg.data.uri, "--out", str(out), "--device", "cpu"]
    assert main(args + ["--save-examples", "2", "--batch-size", "3"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = json.loads(out.read_text())
    assert printed == stored
    for k in ("fg_ari", "all_ari", "f1", "precision", "recall", "static_recall", "moving_recall"):
        assert k in stored
    assert stored["clips"] == len(_clips(cfg)) and stored["protocol"] == "clean"
    assert stored["checkpoint"] == ckpt and stored["batch_size"] == 3
    pngs = sorted((tmp_path / "res_examples").glob("*.png"))
    assert len(pngs) == 2
    # same numbers as the in-process path over the same clips
    direct = evaluate_model(smoke[1], _batches(cfg, _clips(cfg), 3), cfg, "clean")
    assert stored["all_ari"] == pytest.approx(direct["all_ari"], abs=1e-9)
    assert stored["tp"] == direct["tp"]

    text = out.read_text()
    assert main(args + ["--protocol", "reference"]) == 2  # one line: --out ... exists
    assert out.read_text() == text  # untouched
    assert main(args + ["--protocol", "reference", "--overwrite"]) == 0
    assert json.loads(out.read_text())["protocol"] == "reference"


def test_cli_rates_the_pseudo_labels_of_the_weights(smoke, ray_session, tmp_path, capfd):
    """--pseudo-labels: the checkpoint's weights as the teacher, rated against GT on the split
    exactly as the in-run diagnostics do (evaluate_teacher over the same clips)."""
    from diod_ray.checkpoint import save_checkpoint
    from diod_ray.teacher_diagnostics import evaluate_teacher

    cfg, model, _ = smoke
    # the untrained model's W_fg is about 0.5: a threshold p under it keeps candidates to rate
    cfg = apply_overrides(cfg, {"distill.p": 0.3})
    ckpt = str(tmp_path / "p03")
    save_checkpoint(ckpt, {"config": to_dict(cfg), "student": model.state_dict()})
    args = ["--checkpoint", ckpt, "--data", cfg.data.uri, "--device", "cpu", "--batch-size", "3"]
    assert main(args + ["--pseudo-labels"]) == 0
    out, err = capfd.readouterr()
    got = json.loads(out.strip().splitlines()[-1])["pseudo_labels"]
    assert "Running Dataset" not in out + err  # Ray Data's progress blocks stay in its log files
    want = evaluate_teacher(model, _batches(cfg, _clips(cfg), 3), cfg)
    assert set(got) == set(want) >= {"kept_per_frame", "precision", "kept_area", "static_cover"}
    assert want["kept_per_frame"] > 0 and 0 < want["kept_area"] <= 1
    for k, v in want.items():
        assert got[k] == (None if math.isnan(v) else pytest.approx(v)), k
    assert main(args) == 0
    assert "pseudo_labels" not in json.loads(capfd.readouterr().out.strip().splitlines()[-1])


def test_cli_measures_the_preconditions_of_the_weights(smoke, ray_session, tmp_path, capfd):
    """--preconditions: the weights as the end of burn-in, the teacher made from them as the switch
    makes it; the same values as measure_preconditions on the same clips, and a verdict."""
    from diod_ray.checkpoint import save_checkpoint
    from diod_ray.preconditions import GATE_NAMES, measure_preconditions
    from diod_ray.teacher import build_teacher

    cfg, model, _ = smoke
    cfg = apply_overrides(cfg, {"distill.p": 0.3})  # the untrained W_fg ~0.5 keeps candidates
    ckpt = str(tmp_path / "gates")
    save_checkpoint(ckpt, {"config": to_dict(cfg), "student": model.state_dict()})
    args = ["--checkpoint", ckpt, "--data", cfg.data.uri, "--device", "cpu", "--batch-size", "3"]
    assert main(args + ["--preconditions"]) == 0
    got = json.loads(capfd.readouterr().out.strip().splitlines()[-1])["preconditions"]
    assert set(got["gates"]) == set(GATE_NAMES)
    assert got["verdict"] == "testable" or got["verdict"].startswith("untestable: ")
    want = measure_preconditions(
        model, build_teacher(model, cfg), lambda: _batches(cfg, _clips(cfg), 3), cfg
    )
    assert want["n_kept"] > 0  # the teacher part really ran
    for name in GATE_NAMES:
        w = want[name]
        assert got["gates"][name]["value"] == (None if w is None else pytest.approx(w)), name


def test_cli_bad_inputs_name_the_problem(smoke, tmp_path, capsys):
    cfg, _, ckpt = smoke
    assert main(["--checkpoint", str(tmp_path / "nope"), "--data", cfg.data.uri]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--checkpoint", ckpt, "--set", "model.num_slots=3"]) == 2
    assert "model.num_slots" in capsys.readouterr().err
