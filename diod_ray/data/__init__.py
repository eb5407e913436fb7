"""Data: clips in, clip shards, clips out to training. One sub-package per job:

- :mod:`diod_ray.data.synthetic`: the embedded benchmark rendered and written as shards
  (``python -m diod_ray.data generate``);
- :mod:`diod_ray.data.conversion`: real datasets and video folders converted to shards
  (``python -m diod_ray.data convert``);
- :mod:`diod_ray.data.shards`: the shard format between them (rows, part files, manifest);
- :mod:`diod_ray.data.streaming`: shards into training and evaluation (deterministic clip order,
  augmentation, the Ray Data pipeline; the only Ray here);
- :mod:`diod_ray.data.inspection`: a split summarised (``python -m diod_ray.data inspect``).

The modules at this level serve several of them: ``errors``, ``motion`` (flow to motion masks:
generation and conversion), ``video_io`` (conversion and ``diod_ray.predict``), ``frames``
(model input for prediction and inspection), ``splits`` (the val split training asks for) and the
``__main__`` command line."""
