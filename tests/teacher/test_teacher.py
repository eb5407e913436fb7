"""EMA teacher: the update formula, no gradients, BN modes, frozen mode, DDP, checkpoints."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from diod_ray.config import Config
from diod_ray.teacher import EMATeacher, build_teacher


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))  # [B, 4, H, W]
        return self.head(y.mean((2, 3)))  # [B, 2]


def _step(student: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 6, 6, generator=g)
    loss = student(x).pow(2).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_update_equals_ema_formula_params_and_buffers():
    torch.manual_seed(0)
    student = Net()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    teacher = EMATeacher(student, ema=0.9, bn_mode="eval")
    for seed in range(3):
        before_t = {k: v.clone() for k, v in teacher.model.state_dict().items()}
        _step(student, opt, seed)  # changes parameters and BN running stats of the student
        s = student.state_dict()
        teacher.update(student)
        after = teacher.model.state_dict()
        moved = 0
        for k, v in after.items():
            if v.is_floating_point():
                torch.testing.assert_close(v, 0.9 * before_t[k] + 0.1 * s[k])
                moved += not torch.equal(v, before_t[k])
            else:  # num_batches_tracked: copied
                assert torch.equal(v, s[k])
        # everything but the conv bias (no gradient through BatchNorm) moved, BN stats included
        assert moved == len(after) - 2
    assert teacher.num_updates == 3


def test_teacher_gets_no_gradients_and_moves_only_by_ema():
    torch.manual_seed(1)
    student = Net()
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    teacher = EMATeacher(student, ema=0.996, bn_mode="eval")
    assert all(not p.requires_grad for p in teacher.model.parameters())
    x = torch.randn(2, 3, 6, 6)
    out = teacher(x)
    assert not out.requires_grad
    # a loss that mixes teacher output in: gradients still reach only the student
    loss = (student(x) - out).pow(2).sum()
    opt.zero_grad()
    loss.backward()
    before = {k: p.clone() for k, p in teacher.model.named_parameters()}
    opt.step()
    assert all(p.grad is None for p in teacher.model.parameters())
    for k, p in teacher.model.named_parameters():  # the optimiser step did not touch the teacher
        assert torch.equal(p, before[k])
    teacher.update(student)
    s = dict(student.named_parameters())
    for k, p in teacher.model.named_parameters():
        torch.testing.assert_close(p, 0.996 * before[k] + 0.004 * s[k].detach())
        assert p.grad is None


def test_frozen_teacher_never_changes():
    student = Net()
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    cfg = Config()
    cfg.distill.offline = True
    teacher = build_teacher(student, cfg)
    assert teacher.frozen and teacher.ema == cfg.distill.ema
    start = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    for seed in range(2):
        _step(student, opt, seed)
        teacher.update(student)
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, start[k])


def test_bn_modes():
    torch.manual_seed(2)
    student = Net()
    x = torch.randn(4, 3, 6, 6)
    ev = EMATeacher(student, 0.99, "eval")
    tr = EMATeacher(student, 0.99, "train")
    # eval: running statistics, so a sample's output does not depend on the rest of the batch
    torch.testing.assert_close(ev(x)[:1], ev(x[:1] * 1.0)[:1])
    ev(x)
    assert not ev.model.training and ev.model.bn.num_batches_tracked == 0
    # train: batch statistics (reference behaviour); the running stats get updated
    a, b = tr(x)[:1], tr(torch.cat([x[:1], 5 * x[1:]]))[:1]
    assert not torch.allclose(a, b)
    assert tr.model.bn.training and tr.model.bn.num_batches_tracked == 2
    # only BatchNorm follows the mode: everything else runs as at eval
    assert not tr.model.training and not tr.model.head.training
    with pytest.raises(ValueError, match="teacher_bn"):
        EMATeacher(student, 0.99, "frozen")
    with pytest.raises(ValueError, match="ema"):
        EMATeacher(student, 1.5, "eval")


def test_unwraps_ddp(tmp_path):
    import torch.distributed as dist

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        torch.manual_seed(3)
        student = nn.parallel.DistributedDataParallel(Net())
        teacher = EMATeacher(student, 0.5, "eval")
        assert isinstance(teacher.model, Net)  # the plain module, no DDP wrapper
        opt = torch.optim.SGD(student.parameters(), lr=0.1)
        before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
        _step(student, opt, 0)
        teacher.update(student)
        s = student.module.state_dict()
        torch.testing.assert_close(
            teacher.model.conv.weight, 0.5 * before["conv.weight"] + 0.5 * s["conv.weight"]
        )
    finally:
        dist.destroy_process_group()


def test_state_dict_round_trip_weights_only():
    torch.manual_seed(4)
    student = Net()
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    teacher = EMATeacher(student, 0.9, "eval")
    _step(student, opt, 0)
    teacher.update(student)
    buf = io.BytesIO()
    torch.save(teacher.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = EMATeacher(Net(), 0.9, "eval")
    fresh.load_state_dict(state)
    assert fresh.num_updates == 1
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[k], v)
    with pytest.raises(KeyError, match="model"):
        fresh.load_state_dict({"weights": {}})


def test_teacher_weights_of_a_saved_distillation_state_load_for_inference(tmp_path):
    """A checkpoint written by the training state (TrainState.to_state) in distillation loads its
    teacher (not the student) with load_model(which="teacher"), the path of evaluate / predict /
    `data inspect --weights teacher`; a burn-in checkpoint says it has no teacher."""
    from diod_ray.checkpoint import CheckpointError, load_model, save_checkpoint
    from diod_ray.config import load_preset
    from diod_ray.training.state import TrainState

    torch.manual_seed(0)
    ts = TrainState(load_preset("smoke"), torch.device("cpu"))
    save_checkpoint(tmp_path / "burn_in", ts.to_state())
    ts.make_teacher()
    with torch.no_grad():
        for p in ts.student.parameters():  # the student moves on; the teacher keeps its copy
            p.add_(0.5)
    save_checkpoint(tmp_path / "distill", ts.to_state())

    teacher, _ = load_model(str(tmp_path / "distill"), which="teacher")
    student, _ = load_model(str(tmp_path / "distill"), which="student")
    expected = ts.teacher.model.state_dict()
    got = teacher.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert not all(torch.equal(student.state_dict()[k], expected[k]) for k in expected)
    with pytest.raises(CheckpointError, match="no teacher"):
        load_model(str(tmp_path / "burn_in"), which="teacher")


def test_train_bn_teacher_starts_from_the_learned_mean_not_a_random_draw():
    """With ``model.slot_init=learned`` a train-mode module draws random initial slots per clip;
    the teacher's BatchNorm mode must not turn that on (its labels would be noise)."""
    from diod_ray.config import apply_overrides, load_config
    from diod_ray.model import build_model

    cfg = apply_overrides(load_config("smoke"), {"model.slot_init": "learned"})
    torch.manual_seed(0)
    teacher = EMATeacher(build_model(cfg), 0.99, "train")
    video = torch.randn(2, cfg.data.clip_len, 3, cfg.data.height, cfg.data.width)
    a, b = teacher(video), teacher(video)
    torch.testing.assert_close(a.attn, b.attn)


def test_restart_optimizer_drops_adam_moments():
    from diod_ray.config import load_config
    from diod_ray.training.state import TrainState

    ts = TrainState(load_config("smoke"), torch.device("cpu"))
    loss = sum(p.float().pow(2).sum() for p in ts.student.parameters())
    loss.backward()
    ts.optimizer.step()
    assert len(ts.optimizer.state) > 0
    ts.restart_optimizer()
    assert len(ts.optimizer.state) == 0
    assert ts.optimizer.param_groups[0]["params"][0] is next(ts.student.parameters())


def test_teacher_horizon_names_the_fix_when_distillation_is_short():
    from diod_ray.config import apply_overrides
    from diod_ray.teacher import teacher_horizon

    cfg = Config()  # keep rate 0.996: a 173-step half-life
    assert teacher_horizon(cfg, 865) is None
    short = teacher_horizon(cfg, 384)
    assert "2.2 teacher half-lives" in short and "ema_half_life_steps <= 76.8" in short
    assert teacher_horizon(apply_overrides(cfg, {"distill.ema_half_life_steps": 76.0}), 384) is None
    assert teacher_horizon(apply_overrides(cfg, {"distill.offline": True}), 10) is None
    assert "<= 0.4 " in teacher_horizon(cfg, 2)  # a tiny run is told a usable half-life
