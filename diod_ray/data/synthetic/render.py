"""One clip of the synthetic benchmark, of the version the config names (``data.synthetic.version``:
1 in :mod:`diod_ray.data.synthetic.v1`, 2 in :mod:`diod_ray.data.synthetic.v2`, 3 in
:mod:`diod_ray.data.synthetic.v3`)."""

from __future__ import annotations

from diod_ray.config import SyntheticConfig
from diod_ray.data.synthetic.world import SyntheticVideo


def generate_video(
    cfg: SyntheticConfig, height: int, width: int, split: str, index: int
) -> SyntheticVideo:
    """Render clip ``index`` of ``split``; deterministic from ``(cfg.seed, split, index)``.

    ``cfg.version`` 1 renders :mod:`diod_ray.data.synthetic.v1`, 2 the harder benchmark of
    :mod:`diod_ray.data.synthetic.v2`, 3 the one of :mod:`diod_ray.data.synthetic.v3`."""
    if cfg.version == 2:
        from diod_ray.data.synthetic.v2 import generate_video_v2

        return generate_video_v2(cfg, height, width, split, index)
    if cfg.version == 3:
        from diod_ray.data.synthetic.v3 import generate_video_v3

        return generate_video_v3(cfg, height, width, split, index)
    if cfg.version != 1:
        raise ValueError(f"data.synthetic.version: unknown version {cfg.version!r} (1, 2 or 3)")
    from diod_ray.data.synthetic.v1 import generate_video_v1

    return generate_video_v1(cfg, height, width, split, index)
