"""``python -m diod_ray.data inspect``: a split summarised (``summary``), with motion-mask quality
against GT (``mask_quality``), DIOD's premise measured (``premise``) and, given a checkpoint,
W_fg coverage of static and moving objects (``fg_coverage``)."""
