"""Training telemetry exported to Prometheus through ``ray.util.metrics`` (rank 0 only).

The training loop creates one :class:`Telemetry` on rank 0 and calls :meth:`Telemetry.record`
once per logged step. Every value is kept locally (``latest``, ``totals``, ``records``) and,
when a Ray runtime is initialised in this process (a Ray Train worker, a driver after
``ray.init``), also set on a ``ray.util.metrics`` Gauge or Counter. Ray's per-node metrics agent
then exposes them to Prometheus next to Ray's own Train / Data metrics.

Without Ray (plain unit tests, scripts that never call ``ray.init``) the ``ray.util.metrics``
calls are skipped and the local record is all there is; nothing starts or imports Ray. The check
is made on every ``record`` call, so a Telemetry created before ``ray.init`` starts exporting once
Ray is up.

Names: each metric is registered with Ray as ``diod_<what>``; Ray's exporter adds the ``ray_``
namespace, so Prometheus (and cluster/grafana/diod_ray.json) see ``ray_diod_<what>``. Counters
are registered with a ``_total`` suffix, which the exporter keeps as is (it only appends
``_total`` to counters that lack it). Every series carries the tag ``run`` (the run name).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

# Tag put on every series; Grafana filters on it (variable $run).
RUN_TAG = "run"
# Namespace Ray's Prometheus exporter puts in front of every ray.util.metrics name.
RAY_PROMETHEUS_PREFIX = "ray_"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: the ``record`` keyword that feeds it and its Ray registration."""

    field: str
    name: str  # name registered with ray.util.metrics (no "ray_" prefix)
    kind: Literal["gauge", "counter"]
    description: str

    @property
    def prometheus_name(self) -> str:
        return RAY_PROMETHEUS_PREFIX + self.name


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("step", "diod_step", "gauge", "Global optimiser step of the run."),
    MetricSpec("phase", "diod_phase", "gauge", "Training phase: 0 burn-in, 1 distillation."),
    MetricSpec("loss", "diod_loss", "gauge", "Total training loss of the last logged step."),
    MetricSpec(
        "clips_per_s",
        "diod_clips_per_second",
        "gauge",
        "Training throughput in clips per second (all ranks together).",
    ),
    MetricSpec(
        "data_wait_s",
        "diod_data_wait_seconds",
        "gauge",
        "Seconds per step spent waiting for the next batch from Ray Data.",
    ),
    MetricSpec(
        "candidates_kept",
        "diod_teacher_candidates_kept_total",
        "counter",
        "Teacher pseudo-label candidates kept by the confidence threshold p (distillation).",
    ),
    MetricSpec(
        "candidates_dropped",
        "diod_teacher_candidates_dropped_total",
        "counter",
        "Teacher pseudo-label candidates dropped by the confidence threshold p (distillation).",
    ),
    MetricSpec(
        "motion_kept_share",
        "diod_motion_masks_kept_share",
        "gauge",
        "Share of motion masks kept after filtering by the teacher's foreground (distillation).",
    ),
    MetricSpec(
        "teacher_student_agreement",
        "diod_teacher_student_agreement",
        "gauge",
        "Agreement between teacher and student slot assignments (distillation).",
    ),
)

# Prometheus names as they appear after Ray's export (what Grafana queries).
METRIC_NAMES: tuple[str, ...] = tuple(m.prometheus_name for m in METRICS)

_BY_FIELD = {m.field: m for m in METRICS}


def _ray_initialised() -> bool:
    """True when this process runs inside an initialised Ray runtime; never imports Ray."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


class Telemetry:
    """Per-run metrics of the training loop, created on rank 0 only.

    ``record(step=..., phase=..., loss=..., clips_per_s=..., data_wait_s=...,
    candidates_kept=..., candidates_dropped=..., motion_kept_share=...,
    teacher_student_agreement=...)``:
    ``step`` and ``phase`` are required; any other value left ``None`` is not updated (e.g. the
    distillation values during burn-in). Gauges take the value as is; counters take the
    increment since the previous call (the number of candidates kept in this step).

    Local record (always kept, Ray or not): ``latest`` maps each Prometheus name to its last
    gauge value or the counter's running total, ``totals`` holds counter totals by field, and
    ``records`` counts ``record`` calls. ``exporting`` says whether the last call reached Ray.
    """

    def __init__(self, run_name: str):
        if not isinstance(run_name, str) or not run_name:
            raise ValueError(f"Telemetry: run_name must be a non-empty string, got {run_name!r}")
        self.run_name = run_name
        self.latest: dict[str, float] = {}
        self.totals: dict[str, float] = {m.field: 0.0 for m in METRICS if m.kind == "counter"}
        self.records = 0
        self.exporting = False
        self._ray_metrics: dict[str, Any] | None = None

    # -- Ray side ---------------------------------------------------------------------------

    def _ray_handles(self) -> dict[str, Any] | None:
        """The ray.util.metrics objects, created on first use; None when Ray is not up."""
        if not _ray_initialised():
            return None
        if self._ray_metrics is None:
            from ray.util.metrics import Counter, Gauge

            tags = {RUN_TAG: self.run_name}
            handles: dict[str, Any] = {}
            for m in METRICS:
                cls = Gauge if m.kind == "gauge" else Counter
                metric = cls(m.name, description=m.description, tag_keys=(RUN_TAG,))
                metric.set_default_tags(tags)
                handles[m.field] = metric
            self._ray_metrics = handles
        return self._ray_metrics

    # -- public -----------------------------------------------------------------------------

    def record(
        self,
        *,
        step: int,
        phase: int,
        loss: float | None = None,
        clips_per_s: float | None = None,
        data_wait_s: float | None = None,
        candidates_kept: float | None = None,
        candidates_dropped: float | None = None,
        motion_kept_share: float | None = None,
        teacher_student_agreement: float | None = None,
    ) -> None:
        """Record one logged step (see the class docstring for the meaning of each value)."""
        if phase not in (0, 1):
            raise ValueError(f"Telemetry.record: phase must be 0 (burn-in) or 1, got {phase!r}")
        values = {
            "step": step,
            "phase": phase,
            "loss": loss,
            "clips_per_s": clips_per_s,
            "data_wait_s": data_wait_s,
            "candidates_kept": candidates_kept,
            "candidates_dropped": candidates_dropped,
            "motion_kept_share": motion_kept_share,
            "teacher_student_agreement": teacher_student_agreement,
        }
        given: dict[str, float] = {}
        for field, value in values.items():
            if value is None:
                continue
            value = float(value)  # accepts python numbers and 0-d tensors / numpy scalars
            spec = _BY_FIELD[field]
            if spec.kind == "counter" and not (value >= 0 and math.isfinite(value)):
                raise ValueError(
                    f"Telemetry.record: {field} is a counter increment and must be a finite "
                    f"number >= 0, got {value!r}"
                )
            given[field] = value

        for field, value in given.items():
            spec = _BY_FIELD[field]
            if spec.kind == "counter":
                self.totals[field] += value
                self.latest[spec.prometheus_name] = self.totals[field]
            else:
                self.latest[spec.prometheus_name] = value
        self.records += 1

        handles = self._ray_handles()
        self.exporting = handles is not None
        if handles is None:
            return
        for field, value in given.items():
            metric = handles[field]
            if _BY_FIELD[field].kind == "counter":
                if value > 0:
                    metric.inc(value)
            else:
                metric.set(value)

    def snapshot(self) -> dict[str, float]:
        """A copy of ``latest``: Prometheus name -> last gauge value / counter total."""
        return dict(self.latest)
