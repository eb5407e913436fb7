"""Sweeps with Ray Tune (docs/sweeps.md): ``plan`` (plain data, no Ray), ``driver`` (a Tune
function trainable per trial that fits the run's ``TorchTrainer``), ``commands`` (``python -m
diod_ray.sweeps COMMAND``; the scripts ``sweeps/*.py`` call them), ``cli`` (the flags and run
shared by the three sweeps), ``resources`` and ``cluster`` (what a trial asks for, how many run at
once), ``burn_in_curve`` (the burn-in length from a validation curve), ``store`` (sweep files on
local disk or S3) and the ``report`` package (table.md, CSVs and plots with intervals over seeds,
beside the paper's numbers; no Ray)."""
