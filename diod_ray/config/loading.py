"""Loading a :class:`~diod_ray.config.schema.Config`: presets, YAML files, dotted ``--set``
overrides, Ray Tune's dotted ``param_space``, and (de)serialisation to dicts / YAML.

Every path goes through :func:`merge`, which checks each key and value against the schema and
raises :class:`~diod_ray.config.schema.ConfigError` naming the key and the valid choices.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from diod_ray.config.schema import MOVED_KEYS, Config, ConfigError

PRESET_DIR = Path(__file__).parent / "presets"

# --------------------------------------------------------------------------------------------
# Dotted keys, validation, merge
# --------------------------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema, e.g. ``objectives.alpha``."""
    keys: list[str] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            keys.extend(valid_keys(t, f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(t))
    if origin is list:
        return f"list[{_type_name(typing.get_args(t)[0])}]"
    return getattr(t, "__name__", str(t))


def _coerce(key: str, value: Any, t: Any) -> Any:
    """Check ``value`` against the annotated type ``t``; ints are accepted for floats."""
    origin = typing.get_origin(t)
    if origin is Literal:
        choices = typing.get_args(t)
        if value in choices and type(value) is type(choices[0]):
            return value
        raise ConfigError(f"{key}: {value!r} is not {_type_name(t)}")
    if origin is list:
        (item_t,) = typing.get_args(t)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_type_name(t)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, item_t) for i, v in enumerate(value)]
    if t is bool:
        if isinstance(value, bool):
            return value
    elif t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif t is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif t is str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
    raise ConfigError(f"{key}: expected {_type_name(t)}, got {value!r} ({type(value).__name__})")


def _unknown(key: str) -> ConfigError:
    if key in MOVED_KEYS:
        return ConfigError(f"config key {key!r} is now {MOVED_KEYS[key]!r}")
    keys = valid_keys()
    return ConfigError(f"unknown config key {key!r}; valid keys are:\n  " + "\n  ".join(keys))


def _merge_into(obj: Any, data: dict, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = _hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown(key)
        t = hints[name]
        if dataclasses.is_dataclass(t):
            _merge_into(getattr(obj, name), value, f"{key}.")
        else:
            setattr(obj, name, _coerce(key, value, t))


def merge(cfg: Config, data: dict) -> Config:
    """Return a copy of ``cfg`` with the nested mapping ``data`` applied (strictly checked)."""
    out = copy.deepcopy(cfg)
    _merge_into(out, data or {})
    return out


def dotted_to_nested(flat: dict[str, Any]) -> dict:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (Tune param_space and --set use dotted keys)."""
    nested: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {p!r} is a leaf, not a section")
        node[parts[-1]] = value
    return nested


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Apply dotted-key overrides whose values are already typed (e.g. from Ray Tune)."""
    return merge(cfg, dotted_to_nested(overrides))


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set a.b=value``; the value is read as YAML (numbers, bools, lists)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. objectives.alpha=0.3")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse {raw!r}: {exc}") from exc
    if key not in valid_keys():
        raise _unknown(key)
    # a string field given something YAML reads as a number / bool keeps the raw text
    leaf_t = _leaf_type(key)
    if leaf_t is str and not isinstance(value, str):
        value = raw
    return key, value


def _leaf_type(key: str) -> Any:
    cls: Any = Config
    parts = key.split(".")
    for p in parts[:-1]:
        cls = _hints(cls)[p]
    return _hints(cls)[parts[-1]]


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_flat(cfg: Config) -> dict[str, Any]:
    """The config as ``{dotted.key: value}``."""
    out: dict[str, Any] = {}

    def walk(node: dict, prefix: str) -> None:
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(to_dict(cfg), "")
    return out


def from_dict(data: dict) -> Config:
    return merge(Config(), data)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# --------------------------------------------------------------------------------------------
# Presets and files
# --------------------------------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _read_yaml(path: Path, what: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {str(path)!r} is not valid YAML: {exc}") from exc
    return data or {}


def load_preset(name: str) -> Config:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(f"unknown preset {name!r}; presets are: {', '.join(preset_names())}")
    try:
        return from_dict(_read_yaml(path, "preset"))
    except ConfigError as exc:
        raise ConfigError(f"preset {name!r} ({path}): {exc}") from exc


def load_config(
    preset: str | None = "synthetic",
    config_file: str | None = None,
    sets: list[str] | None = None,
) -> Config:
    """Preset, then a YAML file, then ``--set`` overrides, each strictly checked."""
    cfg = load_preset(preset) if preset else Config()
    if config_file:
        try:
            cfg = merge(cfg, _read_yaml(Path(config_file), "config file"))
        except ConfigError as exc:
            raise ConfigError(f"config file {config_file!r}: {exc}") from exc
    if sets:
        cfg = apply_overrides(cfg, dict(parse_set(s) for s in sets))
    return cfg


def add_config_args(parser: argparse.ArgumentParser, default_preset: str = "synthetic") -> None:
    """The three config options every CLI takes."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        help=f"preset name ({', '.join(preset_names())}); default {default_preset}",
    )
    parser.add_argument("--config", default=None, help="YAML file merged over the preset")
    add_set_argument(parser)


def add_set_argument(
    parser: argparse.ArgumentParser,
    help: str = "override one dotted key, e.g. --set objectives.alpha=0.2 (repeatable)",
) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable, collected in ``args.sets``."""
    parser.add_argument(
        "--set", dest="sets", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help
    )


def config_from_args(args: argparse.Namespace) -> Config:
    # `--set a=1 b=2` (several pairs after one --set) and repeated --set are both accepted
    return load_config(args.preset, args.config, list(args.sets or []))
