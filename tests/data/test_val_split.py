"""Per-epoch validation reads data.val_split; the test split is only reported (issue 13 item 5)."""

from __future__ import annotations

from diod_ray.config import apply_overrides, load_preset


def test_per_epoch_validation_reads_the_val_split(ray_session, tmp_path):
    from diod_ray.data.shards import store
    from diod_ray.data.synthetic.generate import ensure_synthetic, generate_split
    from diod_ray.training.driver import build_trainer

    uri = str(tmp_path / "data")
    cfg = apply_overrides(
        load_preset("smoke"),
        {
            "data.uri": uri,
            "run.storage_path": str(tmp_path / "runs"),
            "run.name": "val",
            "run.val_every_epochs": 1,
            "run.num_workers": 0,  # in-process: one fit, no worker start-up
            "schedule.distill_epochs": 0,  # one epoch: one val pass, one test pass
        },
    )
    ensure_synthetic(cfg, progress=False)
    # val with 2 clips, test with 4: the clip counts show which split each report read
    generate_split(cfg, "val", clips=2, overwrite=True, progress=False)
    assert store.count_clips(uri, "test") == 4
    result = build_trainer(cfg).fit()
    m = result.metrics
    assert m["val/clips"] == 2
    assert m["final/clips"] == 4
