"""The data path through a real 2-worker Ray Train run: eval datasets split by Train (each clip
exactly once per pass across the ranks, in whole batches of one process), training batches per
rank disjoint and the rank's stream continued across epochs."""

from __future__ import annotations

import json

import pytest
from test_shards import make_clip

from diod_ray.config import load_config, to_dict
from diod_ray.data.shards import store
from diod_ray.data.streaming.batches import iter_train_batches
from diod_ray.data.streaming.datasets import eval_dataset
from diod_ray.data.streaming.eval_split import EvalSplit


def _make_loop():
    """The per-worker loop, made inside a function: Ray pickles a nested function by value, so its
    workers need not import this test module (pytest puts tests/data on the driver's path only;
    a module-level function failed with "No module named 'test_train_split'" in a full run)."""

    def _loop(config: dict) -> None:
        import ray.train

        from diod_ray.config import from_dict
        from diod_ray.data.streaming.batches import iter_eval_batches, train_batches

        cfg = from_dict(config["cfg"])
        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        shard = ray.train.get_dataset_shard("test")
        passes = [[b["clip_id"] for b in iter_eval_batches(shard, cfg, 2)] for _ in range(2)]
        train = [
            [b["clip_id"] for b in train_batches(cfg, e, 2, rank=rank, world=world, end_epoch=2)]
            for e in range(2)
        ]
        out = {"eval": passes, "train": train}
        with open(f"{config['out']}/rank{rank}.json", "w") as f:
            json.dump(out, f)
        ray.train.report({"done": 1})

    return _loop


@pytest.mark.slow  # a 2-worker TorchTrainer (two worker processes, a split coordinator)
@pytest.mark.timeout(600)
def test_two_workers_split_eval_and_read_disjoint_training_clips(
    ray_session, smoke_shards, tmp_path
):
    import ray.train
    from ray.train.torch import TorchTrainer

    uri = str(tmp_path / "ds")
    store.write_split(uri, "test", [make_clip(i) for i in range(7)], clips_per_file=3)
    cfg = load_config("smoke", sets=[f"data.uri={smoke_shards}"])
    eval_cfg = load_config("smoke", sets=[f"data.uri={uri}"])
    out = tmp_path / "out"
    out.mkdir()
    TorchTrainer(
        _make_loop(),
        train_loop_config={"cfg": to_dict(cfg), "out": str(out)},
        scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=ray.train.RunConfig(name="split", storage_path=str(tmp_path / "runs")),
        datasets={"test": eval_dataset(eval_cfg, batch_size=2)},
        dataset_config=EvalSplit(),
    ).fit()
    r0, r1 = (json.load(open(out / f"rank{r}.json")) for r in (0, 1))
    stored = [c.clip_id for c in store.iter_clips(uri, "test")]
    one_process = [stored[i : i + 2] for i in range(0, 7, 2)]
    for p in range(2):  # each pass: every clip exactly once, in one process's batches
        b0, b1 = r0["eval"][p], r1["eval"][p]
        assert sorted(c for b in b0 + b1 for c in b) == sorted(stored)
        assert all(b in one_process for b in b0 + b1) and b0 and b1
    assert r0["eval"][0] == r0["eval"][1]  # the same shares in every pass
    for e in range(2):  # training: 2 batches of 1 clip per rank, disjoint
        t0, t1 = r0["train"][e], r1["train"][e]
        assert len(t0) == len(t1) == 2 and all(len(b) == 1 for b in t0 + t1)
        assert not {c for b in t0 for c in b} & {c for b in t1 for c in b}
        assert t0 == [b["clip_id"] for b in iter_train_batches(cfg, e, 2, world=2)]
