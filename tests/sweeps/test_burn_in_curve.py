"""Choosing the burn-in length from a validation curve (``python -m diod_ray.sweeps
burn-in-length``); no Ray."""

from __future__ import annotations

import json

import pytest

from diod_ray.sweeps.burn_in_curve import CurveError, plateau_epoch, read_val_curve


def test_plateau_is_the_first_smoothed_point_near_the_best():
    # a rise with one noisy spike at epoch 6: the spike alone must not end the burn-in
    curve = [(2, 0.0), (4, 1.0), (6, 9.0), (8, 2.0), (10, 6.0), (12, 7.0), (14, 8.0), (16, 7.0)]
    out = plateau_epoch(curve, window=3, tolerance=1.5)
    smooth = [p["smoothed"] for p in out["curve"]]
    assert smooth[0] is None and smooth[-1] is None
    assert smooth[1] == pytest.approx(10 / 3) and smooth[5] == pytest.approx(7.0)
    # best smoothed 7.33 (epoch 14); threshold 5.83; epoch 6 smooths to 4.0, epoch 10 to 5.0,
    # epoch 12 to 7.0: the first within tolerance
    assert out["best_smoothed"] == pytest.approx(22 / 3)
    assert out["epoch"] == 12
    # without smoothing the spike would have been chosen
    assert plateau_epoch(curve, window=1, tolerance=1.5)["epoch"] == 6


def test_bad_rule_arguments_and_short_curves_are_clear_errors():
    with pytest.raises(CurveError, match="odd"):
        plateau_epoch([(1, 1.0), (2, 2.0)], window=2)
    with pytest.raises(CurveError, match="needs >= 3"):
        plateau_epoch([(1, 1.0), (2, 2.0)], window=3)


def test_reads_the_curve_from_a_runs_tensorboard_files(tmp_path):
    from tensorboardX import SummaryWriter

    run = tmp_path / "run"
    (run / "tensorboard").mkdir(parents=True)
    with pytest.raises(CurveError, match="summary.json"):
        read_val_curve(str(run))
    (run / "summary.json").write_text(json.dumps({"steps": 320, "epochs": 10}))
    with pytest.raises(CurveError, match="no TensorBoard event file"):
        read_val_curve(str(run))
    w = SummaryWriter(str(run / "tensorboard"))
    for epoch in (2, 4, 6):
        w.add_scalar("val/f1", 0.01 * epoch, global_step=32 * epoch)
        w.add_scalar("loss/total", 1.0, global_step=32 * epoch)
    w.close()
    curve = read_val_curve(str(run))
    assert [e for e, _ in curve] == [2, 4, 6]
    assert [v for _, v in curve] == pytest.approx([2.0, 4.0, 6.0])
    with pytest.raises(CurveError, match="no 'val/fg_ari' scalar"):
        read_val_curve(str(run), "val/fg_ari")


def test_the_cli_prints_the_choice_as_json(tmp_path):
    import subprocess
    import sys

    from tensorboardX import SummaryWriter

    run = tmp_path / "run"
    (run / "summary.json").parent.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"steps": 64, "epochs": 8}))
    w = SummaryWriter(str(run / "tensorboard"))
    for epoch, f1 in ((2, 0.01), (4, 0.05), (6, 0.06), (8, 0.07)):
        w.add_scalar("val/f1", f1, global_step=8 * epoch)
    w.close()
    out = subprocess.run(
        [sys.executable, "-m", "diod_ray.sweeps", "burn-in-length", str(run)],
        capture_output=True,
        text=True,
        check=True,
    )
    choice = json.loads(out.stdout)
    # smoothed: 4.0 (epoch 4), 6.0 (epoch 6); best 6.0, threshold 4.5: epoch 6
    assert choice["epoch"] == 6 and choice["metric"] == "val/f1"
    assert "epoch    4  val/f1   5.0  smoothed   4.0" in out.stderr
