"""One configuration schema for everything: data, model, objectives, distillation, optimisation, run.

The dataclasses below are the single source of truth. YAML presets in ``diod_ray/config/presets/``,
``--config FILE.yaml`` and repeated ``--set a.b=value`` on every CLI, and Ray Tune's
``param_space`` all address the same dotted keys (``objectives.alpha``, ``distill.p``, ...).

Unknown keys and wrong types raise :class:`ConfigError`, which lists the valid keys; the
loading, merging and CLI helpers live in :mod:`diod_ray.config.loading`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and the valid choices."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class SyntheticConfig:
    """The embedded procedurally generated benchmark (diod_ray/data/synthetic/)."""

    seed: int = 0
    num_train_clips: int = 256
    num_test_clips: int = 64
    # rendered frames per generated video; training clips of data.clip_len are cut from them
    frames_per_video: int = 5
    min_objects: int = 3
    max_objects: int = 6
    # share of objects that move (the rest are static)
    moving_share: float = 0.6
    # share of clips with camera motion (pan / zoom): the static background then has flow too
    camera_motion_share: float = 0.5
    # object speed (px/frame) and camera pan speed, for a 64x128 frame (scaled with sqrt(H*W))
    max_speed_px: float = 3.0
    # object extent (longer side) as a share of sqrt(H*W)
    min_size_frac: float = 0.14
    max_size_frac: float = 0.32
    # the scene style: "driving" (road, cars, signs) or "tabletop" (textured floor, blobs)
    style: Literal["driving", "tabletop"] = "tabletop"
    # 1: the first benchmark (saturated objects on a desaturated floor, near-clean flow masks;
    # kept so synthetic-v1 / smoke-v1 regenerate bit for bit); 2: objects and background from
    # one texture distribution, static and moving objects of the same kinds, parallax and
    # swaying background, slow movers and convoys (diod_ray/data/synthetic/v2.py, docs/data.md);
    # 3: version 2's noise with DIOD's premise built in: object kinds with their own shapes and
    # textures, a background of another texture family in the same colours, large objects
    # (diod_ray/data/synthetic/v3.py, docs/data.md)
    version: Literal[1, 2, 3] = 1
    # videos of the validation split (its own random streams, disjoint from train and test)
    num_val_clips: int = 32
    # version 3: share of the background area painted with object-kind textures (0 = the premise
    # at full strength: only objects carry object textures; 0.25 weakens it)
    bg_object_texture_share: float = 0.0


@dataclass
class FlowConfig:
    """Optical flow -> noisy motion masks (diod_ray/data/motion.py)."""

    # "dis" (default: sharper masks on small objects, docs/perf/data-gen.md) or "farneback"
    method: Literal["dis", "farneback"] = "dis"
    # residual flow magnitude (px/frame) above which a pixel counts as moving
    threshold_px: float = 0.8
    # segments smaller than this share of the frame are dropped
    min_segment_frac: float = 0.002
    # robust camera-motion fit: "affine" (RANSAC on a flow grid) or "none"
    camera_model: Literal["affine", "none"] = "affine"
    morph_kernel: int = 3


@dataclass
class AugmentConfig:
    """Weak view (teacher) and strong view (student) of the same clip: same geometry."""

    crop_p: float = 0.4
    crop_scale_min: float = 0.75
    crop_scale_max: float = 1.0
    # crop aspect ratio w/h; 0 means "the frame's own aspect ratio"
    crop_ratio: float = 0.0
    flip_p: float = 0.4
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    solarize_p: float = 0.2
    solarize_threshold: float = 0.5


@dataclass
class DataConfig:
    # local path or s3://bucket/prefix holding <split>/ subfolders of Parquet shards
    uri: str = "~/.cache/diod_ray/synthetic-v1"
    train_split: str = "train"
    test_split: str = "test"
    # per-epoch validation (val/*) and every early choice read this split; a URI without it
    # falls back to the first run.val_clips clips of test_split with one warning (docs/data.md)
    val_split: str = "val"
    # generate the synthetic shards when data.uri holds none (embedded default only)
    generate_if_missing: bool = True
    clip_len: int = 5
    height: int = 64
    width: int = 128
    # motion-mask / GT instances with at most this many pixels (at stored resolution) are dropped
    min_mask_pixels: int = 50
    # objects per frame after which motion masks are cut (padding size of the mask tensor)
    max_objects: int = 16
    # clips per optimiser step in all (the paper's 8), split evenly over run.num_workers
    batch_size: int = 8
    prefetch_batches: int = 2
    # seed of the training data order and augmentation; -1 = derive it from run.seed (so a
    # sweep over run.seed varies the data too); an explicit value fixes the data across seeds
    shuffle_seed: int = -1
    # clips in the worker's seeded shuffle buffer that mixes clips across part files
    shuffle_buffer_clips: int = 32
    # colour order fed to the network: "rgb" (ours) or "bgr" (the reference never converts)
    colour_order: Literal["rgb", "bgr"] = "rgb"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    # "resnet18": ResNet-18 trunk at stride 4; "dinov2": frozen DINOv2 ViT-S/14 (DIOD*)
    encoder: Literal["resnet18", "dinov2"] = "resnet18"
    # channels of the first ResNet stage; 64 is ResNet-18 (512 out), smaller for CPU presets
    trunk_width: int = 64
    dinov2_weights: str = ""
    gru_hidden: int = 64
    gru_layers: int = 2
    gru_kernel: int = 3
    # "per_token": LayerNorm over channels (resolution independent, default);
    # "reference": one LayerNorm over all tokens and channels (tied to the resolution)
    token_norm: Literal["per_token", "reference"] = "per_token"
    num_slots: int = 45
    slot_dim: int = 64
    slot_mlp_hidden: int = 128
    # index of the background slot (negative counts from the end)
    bg_slot: int = -1
    # "fixed" (default, the authors' code): one random draw at construction kept as a buffer, the
    # same starting slots for every clip and for student and teacher alike (the EMA of an
    # unchanging buffer is itself), so the teacher's slots start where the student's do;
    # "learned": per-slot mean and scale learned, a fresh draw per clip in training and the mean
    # at eval (the teacher then starts from the mean, not from the student's draw)
    slot_init: Literal["learned", "fixed"] = "fixed"
    # slot-attention steps on frame 0 before the per-frame steps, and steps per frame
    pre_steps: int = 1
    steps_per_frame: int = 1
    decoder_channels: int = 64
    attn_eps: float = 1e-8


@dataclass
class ObjectivesConfig:
    """Burn-in objective (paper eq. 1 plus the matched weighted BCE and MSE)."""

    # regularisation strength of W_fg in L_fg/bg (eq. 1)
    alpha: float = 0.3
    w_recon: float = 1.0
    w_motion: float = 1.0
    w_fg_nll: float = 1.0
    w_teacher: float = 1.0
    # probabilities are squashed as scale * p + eps before logs (reference: 0.999, 1e-8)
    prob_scale: float = 0.999
    prob_eps: float = 1e-8
    # object-size weight of the positive BCE term in burn-in: "reference" = 2 - |o|/(h w), "none" = 1
    size_weight: Literal["reference", "none"] = "reference"
    # per-frame normalisation of the matched BCE terms (motion masks, teacher pseudo-labels):
    # "reference" (default, the authors' code) = mean over objects, summed over the T frames,
    # divided by the batch size, so the mask and teacher terms weigh T times more against the
    # reconstruction than under "paper" = mean over objects, then mean over frames with objects
    # (eq. 3-4 read literally). The authors' numbers were trained with the sum.
    normalisation: Literal["paper", "reference"] = "reference"


@dataclass
class DistillConfig:
    """Teacher-student self-distillation (paper §3.3, eq. 2-5) and Table 4's ablation modes."""

    # confidence threshold p for teacher candidates and motion-mask filtering
    p: float = 0.9
    # EMA keep rate of the teacher (paper: 0.996, a half-life of ~173 steps)
    ema: float = 0.996
    # the teacher's horizon in optimiser steps: > 0 sets the keep rate to 0.5 ** (1 / half_life)
    # and takes precedence over `ema` (which must then stay at its default; both set is an error);
    # 0 = use `ema`. Short runs need it: distillation should span many half-lives (docs/teacher.md)
    ema_half_life_steps: float = 0.0
    # teacher BatchNorm: "train" (default, the authors' code, which never calls .eval() on the
    # teacher) normalises with the teacher batch's own statistics; "eval" uses the EMA'd running
    # statistics (labels independent of which clips share a batch; the usual mean-teacher
    # choice). Only BatchNorm changes mode: the rest of the teacher always runs as at eval
    teacher_bn: Literal["eval", "train"] = "train"
    # "one_to_many": every connected region is a candidate; "one_to_one": one per teacher slot
    connection: Literal["one_to_many", "one_to_one"] = "one_to_many"
    connectivity: Literal[4, 8] = 4
    # regions with at most this many pixels (attention grid) are dropped
    min_region_pixels: int = 10
    # candidate score eq. (2): the mean over the candidate of "foreground" = the teacher's W_fg (the
    # authors' code, for candidates and motion masks alike) or "attention" = the candidate's own
    # teacher slot map. Eq. (2) says "its source attention map", which reads as the slot map, but
    # §3.3.3 scores motion masks "as described in 3.3.2" on W_fg, and the code uses W_fg for both.
    # A slot's softmax share over its argmax region rarely reaches p = 0.9 (measured p50 ~0.5), so
    # "attention" keeps almost no candidate; "foreground" is the default (docs/teacher.md)
    score_source: Literal["attention", "foreground"] = "foreground"
    # keep the fixed motion masks (filtered by the teacher's W_fg) during distillation
    use_motion_masks: bool = True
    # offline pseudo-labelling: labels from the frozen end-of-burn-in model, no EMA
    offline: bool = False
    # reference quirk: slot 0's argmax region is merged into the background
    quirk_slot0_background: bool = False
    # reference quirk: only split-off components are confidence filtered; the first in raster
    # order keeps the slot label unconditionally (filtering then happens in the loss)
    quirk_first_component: bool = False


@dataclass
class OptimConfig:
    lr: float = 5e-4
    warmup_steps: int = 3000
    # lr = base * min(1, step / warmup) * decay_rate ** (step / decay_steps)
    decay_rate: float = 0.5
    decay_steps: int = 50000
    grad_clip: float = 1.0
    # the authors relaunch distillation as a new process: the warm-up starts again from step 0
    # of distillation and Adam starts with no moments. Both are the default; false keeps the
    # burn-in's learning rate and Adam state running through the switch
    restart_warmup_at_distill: bool = True
    restart_optimizer_at_distill: bool = True
    # the epoch at which those restarts happen: -1 = the switch to distillation
    # (schedule.burn_in_epochs). The sweeps' equal-length control ("more burn-in") sets it to the
    # epoch it branches at, so control and DIOD see the same learning rate and Adam restart
    restart_at_epoch: int = -1


@dataclass
class ScheduleConfig:
    burn_in_epochs: int = 400
    distill_epochs: int = 500
    # optimiser steps per epoch; 0 derives it from the train split size and the batch size
    steps_per_epoch: int = 0
    # extra burn-in epochs at which a checkpoint is kept for later branching (sweeps)
    keep_burn_in_epochs: list[int] = field(default_factory=list)


@dataclass
class RunConfig:
    # a run is (storage_path, name): running the same command again resumes it
    storage_path: str = "~/diod_ray_runs"
    name: str = "diod-synthetic"
    # Train workers; 0 = Ray Train's in-process local mode, a unit-test tool that keeps
    # checkpoints in memory only (no resume). 1 by default: one code path with the cluster, and
    # the same command resumes the run (docs/performance.md, "Main job: one worker")
    num_workers: int = 1
    use_gpu: bool = False
    # CPUs reserved per Train worker; keep some free for Ray Data's read/augment tasks
    cpus_per_worker: float = 1.0
    # torch intra-op threads per worker; 0 = the CPUs it holds (int(cpus_per_worker), at least 1).
    # More than it holds only where the CPUs Ray Data reserves sit mostly idle: the 2-core laptop
    # preset, whose data path takes a few % of the core it reserves (docs/performance.md §4c)
    torch_threads: int = 0
    # "bf16" autocast on GPU (default), "fp16" autocast + GradScaler, "fp32" everywhere (CPU is fp32)
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    channels_last: bool = True
    seed: int = 0
    # GPU: cudnn.benchmark off, torch.use_deterministic_algorithms(True), CUBLAS_WORKSPACE_CONFIG
    # (ray.train.torch.enable_reproducibility); off keeps cudnn.benchmark on. CPU runs are
    # deterministic either way (docs/performance.md, "Deterministic runs")
    deterministic: bool = False
    max_failures: int = 0
    checkpoint_every_steps: int = 200
    num_to_keep: int = 2
    log_every_steps: int = 10
    # Ray Train's own log level on the console (RunConfig.logging_config): WARNING keeps the
    # per-report "Reporting training result ..." / "Checkpoint successfully created" lines off
    # the console, where the loop prints one line per epoch instead; INFO brings them back
    ray_train_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    image_every_steps: int = 200
    tensorboard: bool = True
    evaluate_at_end: bool = True
    # a distillation run (and a sweep, once) measures whether its data satisfies DIOD's premise
    # before training (diod_ray/data/inspection/premise.py: two pixel classifiers on the train
    # and val splits, a few seconds; needs GT and scikit-learn) and joins it to the verdict
    # ("untestable: premise, ..."); false: not measured, the verdict is the gates' alone
    measure_premise: bool = True
    # every N epochs report val/<metric> on the first run.val_clips clips of data.val_split
    # (test_split when the URI has no val split; ASHA needs a quality signal per epoch); 0 = never
    val_every_epochs: int = 0
    val_clips: int = 16
    eval_protocol: Literal["reference", "clean"] = "clean"
    eval_batch_size: int = 8
    # checkpoint URI (directory, local or s3://) to initialise student (and teacher) from, e.g. a
    # kept burn-in checkpoint that a distillation branch of a sweep starts from; "" = fresh start
    init_from: str = ""
    # with init_from: load only the student weights and start at step 0 (e.g. KITTI from TRI-PD)
    init_weights_only: bool = False
    # fault-tolerance testing: fail once at this step (local mode raises, workers exit); -1 = never
    fault_injection_step: int = -1
    # which weights evaluate / predict use from a checkpoint: "student" (the reference) or "teacher"
    eval_weights: Literal["student", "teacher"] = "student"


@dataclass
class StorageConfig:
    """Where data, runs, sweeps and Tune's experiment state live (diod_ray/storage.py): one
    endpoint for all of them. Credentials never go here: the AWS default chain supplies them."""

    # S3-compatible endpoint (MinIO, Ceph, moto), e.g. http://minio:9000; "" = AWS_ENDPOINT_URL_S3,
    # else AWS_ENDPOINT_URL, else AWS itself
    endpoint_url: str = ""
    # "" = AWS_REGION, else AWS_DEFAULT_REGION (us-east-1 for a custom endpoint without one)
    region: str = ""
    # true: local paths (run.storage_path, a sweep's --storage) are a mount every node shares
    # (NFS, a cluster file system), so a multi-node cluster may use them; false: a local path on
    # a cluster of more than one node is refused before anything runs (docs/data.md)
    shared_local: bool = False


# keys that moved: a config or --set naming the old key is told the new one
MOVED_KEYS = {
    "data.s3_endpoint_url": "storage.endpoint_url",
    "data.s3_region": "storage.region",
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
