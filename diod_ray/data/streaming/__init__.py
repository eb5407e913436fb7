"""Shards into training and evaluation: the deterministic clip order (``order``), per-clip
augmentation (``augment``) and the Ray Data pipeline."""
