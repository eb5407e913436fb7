"""The one config schema: presets, YAML files, --set overrides, strict errors."""

from __future__ import annotations

import argparse

import pytest

from diod_ray.config import (
    Config,
    ConfigError,
    add_config_args,
    apply_overrides,
    config_from_args,
    load_config,
    load_preset,
    preset_names,
    to_flat,
    valid_keys,
)
from diod_ray.model.resnet import stride4_size


def test_every_preset_loads_with_the_papers_settings():
    assert set(preset_names()) >= {"smoke", "synthetic", "tri-pd", "kitti", "movi-e"}
    for name in preset_names():
        load_preset(name)
    pd, kitti, movi = load_preset("tri-pd"), load_preset("kitti"), load_preset("movi-e")
    assert (pd.data.clip_len, kitti.data.clip_len, movi.data.clip_len) == (5, 5, 6)
    assert (pd.model.num_slots, kitti.model.num_slots, movi.model.num_slots) == (45, 45, 24)
    for c in (pd, kitti, movi):
        assert c.objectives.alpha == 0.3 and c.distill.p == 0.9 and c.distill.ema == 0.996
    # the attention grid is a quarter of the input per side (model/resnet.stride4_size)
    assert (stride4_size(pd.data.height), stride4_size(pd.data.width)) == (120, 242)
    assert (stride4_size(kitti.data.height), stride4_size(kitti.data.width)) == (92, 312)


def test_set_overrides_parse_yaml_values_and_keep_strings():
    cfg = load_config(
        "smoke",
        None,
        [
            "objectives.alpha=0.2",
            "run.use_gpu=true",
            "run.name=123",
            "schedule.keep_burn_in_epochs=[1, 2]",
        ],
    )
    assert cfg.objectives.alpha == 0.2
    assert cfg.run.use_gpu is True
    assert cfg.run.name == "123"
    assert cfg.schedule.keep_burn_in_epochs == [1, 2]


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        load_config("smoke", None, ["objectives.alpa=0.2"])
    assert "objectives.alpa" in str(err.value)
    assert "objectives.alpha" in str(err.value)  # the valid keys are listed


@pytest.mark.parametrize(
    "item, fragment",
    [
        ("objectives.alpha=abc", "expected float"),
        ("model.num_slots=2.5", "expected int"),
        ("distill.connection=many", "one of"),
        ("run.use_gpu=3", "expected bool"),
        ("novalue", "KEY=VALUE"),
    ],
)
def test_wrong_types_are_clear_errors(item, fragment):
    with pytest.raises(ConfigError) as err:
        load_config("smoke", None, [item])
    assert fragment in str(err.value)


def test_yaml_file_is_merged_and_checked(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("distill:\n  p: 0.8\n")
    assert load_config("smoke", str(good)).distill.p == 0.8
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill:\n  q: 0.8\n")
    with pytest.raises(ConfigError, match="distill.q"):
        load_config("smoke", str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("smoke", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("nope")


def test_cli_args_and_tune_space_use_the_same_dotted_keys():
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    args = parser.parse_args(
        [
            "--preset",
            "smoke",
            "--set",
            "run.num_workers=2",
            "run.use_gpu=true",
            "--set",
            "distill.p=0.5",
        ]
    )
    cfg = config_from_args(args)
    assert (cfg.run.num_workers, cfg.run.use_gpu, cfg.distill.p) == (2, True, 0.5)
    before = to_flat(cfg)
    tuned = apply_overrides(cfg, {"objectives.alpha": 0.4, "schedule.burn_in_epochs": 3})
    assert tuned.objectives.alpha == 0.4 and tuned.schedule.burn_in_epochs == 3
    # the original is untouched: every field keeps its value (merge works on a deep copy)
    assert to_flat(cfg) == before
    assert before["objectives.alpha"] != 0.4 and before["schedule.burn_in_epochs"] != 3
    assert set(to_flat(Config())) == set(valid_keys())
