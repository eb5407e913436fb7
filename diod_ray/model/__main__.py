"""Model card: ``python -m diod_ray.model --preset NAME [--set KEY=VALUE ...]`` prints JSON.

Parameter count per part, attention grid, output shapes for one clip, and forward FLOPs per frame
counted by ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (shapes only, no
arithmetic, so the full TRI-PD resolution costs nothing). The counter counts matrix products and
convolutions (2 FLOPs per multiply-accumulate); element-wise ops, norms and softmax are not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from diod_ray.cli_errors import command_line
from diod_ray.config import add_config_args, config_from_args
from diod_ray.model.diod import build_model

PARTS = ("trunk", "convgru", "position", "token_norm", "mlp", "slot_attention", "decoder")


def model_card(cfg, preset: str = "") -> dict:
    cfg = dataclasses.replace(cfg)
    cfg.model = dataclasses.replace(cfg.model, dinov2_weights="")  # same shapes, nothing loaded
    with torch.device("meta"):
        model = build_model(cfg)
    T, H, W = cfg.data.clip_len, cfg.data.height, cfg.data.width
    video = torch.empty(1, T, 3, H, W, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(video)
    per_module = counter.get_flop_counts()
    total = counter.get_total_flops()
    flops = {p: sum(per_module.get(f"DIODModel.{p}", {}).values()) / T for p in PARTS}
    flops["other"] = total / T - sum(flops.values())  # the slots_combine product
    flops["total"] = total / T
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return {
        "preset": preset,
        "encoder": cfg.model.encoder,
        "token_norm": cfg.model.token_norm,
        "input": [T, 3, H, W],
        "grid_hw": list(model.grid_hw),
        "tokens": model.grid_hw[0] * model.grid_hw[1],
        "num_slots": model.num_slots,
        "bg_index": model.bg_index,
        "parameters": model.parameter_counts(),
        "frozen_parameters": frozen,
        "output_shapes_for_one_clip": {
            "attn": list(out.attn.shape),
            "fg": list(out.fg.shape),
            "recon": list(out.recon.shape),
            "slots": list(out.slots.shape),
            "state.slots": list(out.state.slots.shape),
            "state.hidden": [list(h.shape) for h in out.state.hidden],
        },
        "forward_gflop_per_frame": {k: round(v / 1e9, 4) for k, v in flops.items()},
        "flop_counter": "torch.utils.flop_counter.FlopCounterMode, meta device, batch of 1 clip "
        f"of {T} frames divided by {T}; matmul/conv only, 2 FLOPs per MAC",
    }


@command_line("model")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diod_ray.model", description=__doc__)
    add_config_args(parser, default_preset="synthetic")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    print(json.dumps(model_card(cfg, args.preset), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
