"""The CPU slot argmax equals torch.max(dim=1) exactly: values, indices, first index on ties."""

from __future__ import annotations

import pytest
import torch

from diod_ray.objectives.slot_argmax import slot_argmax


def test_equals_torch_max_on_softmax_maps():
    g = torch.Generator().manual_seed(0)
    attn = torch.randn(6, 11, 17, 23, generator=g).softmax(dim=1)
    value, slot = slot_argmax(attn)
    ref_value, ref_slot = attn.max(dim=1)
    assert slot.dtype == torch.int64 and value.dtype == torch.float32
    assert torch.equal(slot, ref_slot)
    assert torch.equal(value, ref_value)


def test_ties_go_to_the_first_slot():
    attn = torch.zeros(2, 5, 3, 4)
    attn[:, 2] = 0.5
    attn[:, 4] = 0.5  # tie between slots 2 and 4 everywhere
    attn[1, 3, 0, 0] = 0.9  # one pixel where slot 3 wins outright
    value, slot = slot_argmax(attn)
    expected = torch.full((2, 3, 4), 2)
    expected[1, 0, 0] = 3
    assert torch.equal(slot, expected)
    assert torch.equal(slot, attn.max(dim=1).indices)
    assert value[1, 0, 0].item() == pytest.approx(0.9)


def test_non_contiguous_and_other_dtypes_fall_back_correctly():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(4, 9, 10, 12, generator=g)
    view = base.permute(0, 1, 3, 2)  # [4, 9, 12, 10], not contiguous
    assert torch.equal(slot_argmax(view)[1], view.max(dim=1).indices)
    as_double = base.double()
    assert torch.equal(slot_argmax(as_double)[1], as_double.max(dim=1).indices)
    single_slot = base[:, :1]
    assert torch.equal(slot_argmax(single_slot)[1], torch.zeros(4, 10, 12, dtype=torch.int64))


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[N, K, h, w\]"):
        slot_argmax(torch.rand(3, 4, 5))
