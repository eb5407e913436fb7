"""Sweeps with Ray Tune (docs/sweeps.md): ``plan`` (plain data, no Ray), ``driver`` (a Tune
function trainable per trial that fits the run's ``TorchTrainer``), ``commands`` (``python -m
diod_ray.sweeps COMMAND``; the scripts ``sweeps/*.py`` call them), ``cli`` (the flags and run
shared by the three sweeps), ``report`` + ``plots`` + ``stats`` (tables, CSV and plots with
intervals over seeds), ``paper`` (the paper's reference numbers), ``store`` (sweep files on local
disk or S3)."""
