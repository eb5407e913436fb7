"""Training with Ray Train (docs/architecture.md): :mod:`.driver` builds the TorchTrainer of a
config and fits it; every worker runs :func:`.loop.train_loop_per_worker` (burn-in, then
distillation) on a :class:`.state.TrainState`, one :func:`.step.train_step` at a time, evaluating
its share in the run (:mod:`.eval_in_run`) and logging on rank 0 (:mod:`.tensorboard`,
:mod:`.telemetry`, :mod:`.console`); :mod:`.schedule` maps the global step to phase and rate.

Nothing is imported here, so ``import diod_ray.training.schedule`` does not pull in Ray."""
