"""Data: the synthetic benchmark, flow-derived motion masks, video I/O, shards and the Ray Data pipeline."""
