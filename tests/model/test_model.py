"""DIODModel: shapes per preset, gradients, streaming state, token norms, memory format, bf16,
and the DINOv2 (DIOD*) encoder with a random local state_dict."""

from __future__ import annotations

import pytest
import torch

from diod_ray.config import Config, apply_overrides, load_preset
from diod_ray.model import DIODModel, ModelOutput, build_model
from diod_ray.objectives.burn_in import burn_in_loss


def _video(B: int, T: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, T, 3, H, W, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def _check_output(out: ModelOutput, model: DIODModel, B: int, T: int, H: int, W: int) -> None:
    K = model.num_slots
    h, w = -(-H // 4), -(-W // 4)
    D = model.slot_attention.dim
    assert out.attn.shape == (B, T, K, h, w) and out.attn.dtype == torch.float32
    assert out.fg.shape == (B, T, h, w)
    assert out.recon.shape == (B, T, 3, H, W)
    assert out.slots.shape == (B, T, K, D)
    assert out.state.slots.shape == (B, K, D)
    assert torch.allclose(out.attn.sum(dim=2), torch.ones(B, T, h, w), atol=1e-5)
    assert torch.equal(out.fg, 1 - out.attn[:, :, model.bg_index])
    assert all(t.shape == (B, model.convgru.hidden_dim, h, w) for t in out.state.hidden)


@pytest.mark.parametrize("preset", ["smoke", "synthetic"])
def test_cpu_presets_forward_shapes(preset):
    cfg = load_preset(preset)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.grid_hw == (-(-cfg.data.height // 4), -(-cfg.data.width // 4))
    assert model.bg_index == cfg.model.num_slots - 1
    B, T = 2, cfg.data.clip_len
    out = model(_video(B, T, cfg.data.height, cfg.data.width))
    _check_output(out, model, B, T, cfg.data.height, cfg.data.width)


# trainable parameters of the paper presets (per_token norm: 2*64 instead of 3.7 M for TRI-PD;
# the reference's fixed slot initialisation is a buffer, so the slot count does not change it;
# model.slot_init=learned adds 2 * K * 64: 12,902,659 for K = 45)
PAPER_PARAMS = {"tri-pd": 12_896_899, "kitti": 12_896_899, "movi-e": 12_896_899}


@pytest.mark.parametrize("preset", sorted(PAPER_PARAMS))
def test_paper_presets_construct_and_run_tiny(preset):
    cfg = load_preset(preset)
    torch.manual_seed(0)
    model = build_model(cfg)
    counts = model.parameter_counts()
    assert counts["total"] == PAPER_PARAMS[preset]
    assert 11.1e6 < counts["trunk"] < 11.2e6  # ResNet-18 without fc
    assert model.trunk.out_channels == 512
    # a tiny-resolution forward with the paper widths (per_token norm runs at any size)
    out = model(_video(1, 2, 18, 30))
    _check_output(out, model, 1, 2, 18, 30)


def test_tri_pd_reference_token_norm_parameter_count():
    cfg = apply_overrides(load_preset("tri-pd"), {"model.token_norm": "reference"})
    with torch.device("meta"):
        model = build_model(cfg)
    counts = model.parameter_counts()
    assert counts["token_norm"] == 2 * 120 * 242 * 64
    assert abs(counts["total"] - 16.6e6) < 0.05e6


def _smoke_cfg(**overrides) -> Config:
    return apply_overrides(load_preset("smoke"), overrides)


def test_gradients_reach_every_trainable_parameter():
    cfg = _smoke_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    video = _video(2, 3, 32, 64)
    ids = torch.zeros(2, 3, 32, 64, dtype=torch.long)
    ids[:, :, 4:12, 8:20] = 1
    ids[:, :, 20:30, 30:50] = 2
    res = burn_in_loss(
        model(video), ids, video, cfg.objectives, model.bg_index, max_objects=cfg.data.max_objects
    )
    res.total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_streaming_state_continues_the_clip():
    cfg = _smoke_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    video = _video(1, 4, 32, 64)
    with torch.no_grad():
        full = model(video)
        first = model(video[:, :2])
        second = model(video[:, 2:], state=first.state)
        fresh = model(video[:, 2:])
    assert torch.allclose(second.attn, full.attn[:, 2:], atol=1e-5)
    assert torch.allclose(second.recon, full.recon[:, 2:], atol=1e-5)
    assert torch.allclose(first.attn, full.attn[:, :2], atol=1e-6)
    assert not torch.allclose(fresh.attn, full.attn[:, 2:], atol=1e-3)


def test_token_norm_resolution():
    torch.manual_seed(0)
    per_token = build_model(_smoke_cfg())
    out = per_token(_video(1, 2, 48, 40))
    assert out.attn.shape[-2:] == (12, 10)
    ref = build_model(_smoke_cfg(**{"model.token_norm": "reference"}))
    assert ref.parameter_counts()["token_norm"] == 2 * 8 * 16 * 16
    ref(_video(1, 2, 32, 64))  # its own resolution works
    with pytest.raises(ValueError, match=r"token_norm='reference'.*8x16.*12x10"):
        ref(_video(1, 2, 48, 40))


def test_channels_last_and_bf16_autocast():
    torch.manual_seed(0)
    model = build_model(_smoke_cfg()).eval()
    video = _video(2, 3, 32, 64)
    with torch.no_grad():
        ref = model(video)
        model = model.to(memory_format=torch.channels_last)
        cl = model(video)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = model(video)
    assert torch.allclose(cl.attn, ref.attn, atol=1e-4)
    assert torch.allclose(cl.recon, ref.recon, atol=1e-4)
    assert bf.attn.dtype == torch.float32 and torch.isfinite(bf.recon).all()
    assert (bf.attn - ref.attn).abs().max() < 0.2  # bf16 keeps the same picture


def test_channels_last_training_steps_with_nhwc_strided_input():
    """Backward through a channels_last model on an NHWC-strided clip (as decoded frames come).

    torch 2.14.1's oneDNN strided 1x1 conv backward corrupts memory on such inputs; the trunk's
    downsample avoids that kernel (resnet.StridedPointwiseConv)."""
    cfg = _smoke_cfg()
    torch.manual_seed(0)
    model = build_model(cfg).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    video = torch.rand(1, 3, 32, 64, 3).sub(0.5).div(0.5).permute(0, 1, 4, 2, 3)  # NHWC strides
    ids = torch.zeros(1, 3, 32, 64, dtype=torch.long)
    ids[:, :, 8:20, 10:30] = 1
    for _ in range(4):
        res = burn_in_loss(
            model(video),
            ids,
            video,
            cfg.objectives,
            model.bg_index,
            max_objects=cfg.data.max_objects,
        )
        opt.zero_grad()
        res.total.backward()
        opt.step()
    assert torch.isfinite(res.total)


def test_slot_init_modes():
    torch.manual_seed(0)
    learned = build_model(_smoke_cfg(**{"model.slot_init": "learned"}))
    video = _video(1, 2, 32, 64)
    with torch.no_grad():
        a, b = learned(video).attn, learned(video).attn  # training: a fresh draw per clip
        assert not torch.equal(a, b)
        learned.eval()
        assert torch.equal(learned(video).attn, learned(video).attn)  # eval: the mean
    fixed = build_model(_smoke_cfg(**{"model.slot_init": "fixed"}))
    assert "slot_attention.slots" in fixed.state_dict()
    assert not any("slots_mu" in n for n, _ in fixed.named_parameters())
    with torch.no_grad():
        assert torch.equal(fixed(video).attn, fixed(video).attn)


def test_bad_config_values():
    with pytest.raises(ValueError, match="model.bg_slot"):
        build_model(_smoke_cfg(**{"model.bg_slot": 9}))
    with pytest.raises(ValueError, match=r"\[B,T,3,H,W\]"):
        build_model(_smoke_cfg())(torch.zeros(1, 3, 32, 64))


# ---------------------------------------------------------------------------------------------
# DIOD*: frozen DINOv2 ViT-S/14 loading an official-format state_dict
# ---------------------------------------------------------------------------------------------

OFFICIAL_TOP_KEYS = {
    "cls_token": (1, 1, 384),
    "pos_embed": (1, 1370, 384),
    "mask_token": (1, 384),
    "patch_embed.proj.weight": (384, 3, 14, 14),
    "patch_embed.proj.bias": (384,),
    "norm.weight": (384,),
    "norm.bias": (384,),
}
OFFICIAL_BLOCK_KEYS = {
    "norm1.weight": (384,),
    "norm1.bias": (384,),
    "attn.qkv.weight": (1152, 384),
    "attn.qkv.bias": (1152,),
    "attn.proj.weight": (384, 384),
    "attn.proj.bias": (384,),
    "ls1.gamma": (384,),
    "norm2.weight": (384,),
    "norm2.bias": (384,),
    "mlp.fc1.weight": (1536, 384),
    "mlp.fc1.bias": (1536,),
    "mlp.fc2.weight": (384, 1536),
    "mlp.fc2.bias": (384,),
    "ls2.gamma": (384,),
}


def _official_shaped_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state_dict with the official ``dinov2_vits14`` key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    keys = dict(OFFICIAL_TOP_KEYS)
    for i in range(12):
        keys.update({f"blocks.{i}.{k}": s for k, s in OFFICIAL_BLOCK_KEYS.items()})
    return {k: torch.randn(s, generator=g) * 0.02 for k, s in keys.items()}


def test_dinov2_encoder_loads_official_keys_and_is_frozen(tmp_path):
    path = tmp_path / "dinov2_vits14.pth"
    state = _official_shaped_state_dict()
    torch.save(state, path)
    cfg = _smoke_cfg(**{"model.encoder": "dinov2", "model.dinov2_weights": str(path)})
    cfg.data.height, cfg.data.width = 28, 56
    torch.manual_seed(0)
    model = build_model(cfg)
    loaded = model.trunk.vit.state_dict()
    assert set(loaded) == set(state)
    assert torch.equal(loaded["blocks.11.mlp.fc2.weight"], state["blocks.11.mlp.fc2.weight"])
    assert model.trunk.out_channels == 1536
    assert model.parameter_counts()["trunk"] == 0
    model.train()
    assert not model.trunk.vit.training
    video = _video(1, 2, 28, 56)
    out = model(video)
    _check_output(out, model, 1, 2, 28, 56)
    ids = torch.zeros(1, 2, 28, 56, dtype=torch.long)
    ids[:, :, 4:16, 8:30] = 1
    burn_in_loss(
        out, ids, video, cfg.objectives, model.bg_index, max_objects=cfg.data.max_objects
    ).total.backward()
    assert all(p.grad is None for p in model.trunk.parameters())
    assert model.convgru.cells[0].conv_gates.weight.grad is not None
    # a size that is not a multiple of 14 runs too (resized up to one)
    assert model(_video(1, 1, 20, 36)).attn.shape[-2:] == (5, 9)


def test_dinov2_weights_errors(tmp_path):
    cfg = _smoke_cfg(
        **{"model.encoder": "dinov2", "model.dinov2_weights": str(tmp_path / "no.pth")}
    )
    with pytest.raises(FileNotFoundError, match="model.dinov2_weights"):
        build_model(cfg)
    bad = _official_shaped_state_dict()
    bad.pop("mask_token")
    torch.save(bad, tmp_path / "bad.pth")
    cfg.model.dinov2_weights = str(tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="mask_token"):
        build_model(cfg)
