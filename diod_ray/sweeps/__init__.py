"""Sweeps with Ray Tune (docs/sweeps.md): ``plan`` (plain data, no Ray), ``driver`` (a Tune
function trainable per trial that fits the run's ``TorchTrainer``), ``cli`` (the flags shared by
``sweeps/*.py``), ``report`` + ``plots`` + ``stats`` (tables, CSV and plots with intervals over
seeds), ``paper`` (the paper's reference numbers), ``store`` (sweep files on local disk or S3)."""
