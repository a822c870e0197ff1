"""The evaluator's side of task.yaml: resource `limits:`, the `stages:` cascade and the `gates:` that stop a trial.

Defaults: no stages (one implicit stage), static gate on, NaN monitor on, every curve pruner off until configured.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from evoforge.config._base import Strict
from evoforge.models import Direction


class Limits(Strict):
    """Resource limits applied to the evaluator subprocess (rlimits set in the child before exec)."""

    memory_mb: int | None = Field(default=4096, gt=0, description="address-space limit (RLIMIT_AS)")
    cpu_s: int | None = Field(default=None, gt=0, description="CPU-time limit (RLIMIT_CPU)")
    output_bytes: int = Field(default=1_000_000, gt=0, description="cap on captured stdout/stderr, each")
    max_processes: int | None = Field(
        default=1024, gt=0, description="processes + threads in the trial's tree (supervisor; RLIMIT_NPROC if not root)"
    )
    max_open_files: int | None = Field(default=4096, gt=0, description="open file descriptors (RLIMIT_NOFILE)")
    disk_mb: int | None = Field(default=1024, gt=0, description="what a trial may write into its folder "
                                "(RLIMIT_FSIZE per file, a watch on the folder); past it: disk_limit")
    keep_files_mb: float = Field(default=10.0, ge=0, description="at run end, trial files larger than this are "
                                 "deleted except the best trials' and the seed's, programs and failures' logs")
    tmp_mb: int = Field(default=256, gt=0, description="size of the jail's in-memory /tmp and /dev/shm (bwrap)")
    network: bool = Field(default=False, description="true: candidates may use the network (default: a fresh, "
                          "empty network namespace)")
    isolation: str = Field(
        default="auto", pattern="^(auto|bwrap|unshare|none)$",
        description="auto picks bwrap, else unshare (never none: name it); see evoforge/experiment/isolation.py",
    )
    warm_workers: bool = Field(default=True, description="bwrap: a warm jail per evaluation slot forks a fresh "
                               "child per Python evaluator stage (README, Sandbox); false: a jail and an interpreter "
                               "per evaluation")


STAGE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class PromoteRule(Strict):
    """When a stage's score lets the trial into the next stage; every rule given must hold."""

    min_score: float | None = Field(default=None, description="absolute bound (a maximum when minimizing)")
    top_quantile: float | None = Field(default=None, gt=0, le=1, description="within the best q of past scores")
    parent_ratio: float | None = Field(default=None, gt=0, description="score >= r x parent's (<= parent/r)")
    min_history: int = Field(default=3, ge=1, description="past scores top_quantile needs before it applies")

    @model_validator(mode="after")
    def _some_rule(self) -> PromoteRule:
        if self.min_score is None and self.top_quantile is None and self.parent_ratio is None:
            raise ValueError("give at least one of min_score, top_quantile, parent_ratio")
        return self


class StageConfig(Strict):
    """One step of the cascade: its evaluator argument(s), timeout and promotion rule (none on the last)."""

    name: str = Field(pattern=STAGE_NAME)
    timeout_s: float = Field(gt=0)
    promote: PromoteRule | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    repeats: int = Field(default=1, ge=1, le=100, description="evaluations of the stage, each with its own seed; "
                         "its score is their mean, with the standard error beside it")


class StaticGateConfig(Strict):
    """Checks made before anything runs."""

    enabled: bool = True
    entry_points: list[str] = Field(default_factory=list, description="top-level names the program must define")
    max_bytes: int = Field(default=1_000_000, gt=0, description="largest candidate program accepted")


class CurveGateConfig(Strict):
    """What every curve pruner watches: one telemetry metric, its direction, and when it may start to fire."""

    metric: str = "loss"
    direction: Direction = Direction.MINIMIZE
    warmup_steps: int = Field(default=0, ge=0, description="never fire at a step below this")
    stages: list[str] | None = Field(default=None, description="stages it watches (null: all)")


class MedianConfig(CurveGateConfig):
    min_trials: int = Field(default=3, ge=1, description="past curves needed at a step before it fires")
    percentile: float = Field(default=50.0, gt=0, lt=100, description="50: the median; 25: keep the best quarter")


class ParentRelativeConfig(CurveGateConfig):
    margin: float = Field(default=0.1, ge=0, description="relative tolerance around the parent's value")


class PatienceConfig(CurveGateConfig):
    patience: int = Field(default=10, ge=1, description="reports without improvement before pruning")
    min_delta: float = Field(default=0.0, ge=0, description="smallest change that counts as improvement")


class SlowdownConfig(Strict):
    factor: float = Field(default=3.0, gt=1, description="prune when t > factor x the parent's t at a step")
    warmup_steps: int = Field(default=0, ge=0)
    min_seconds: float = Field(default=1.0, ge=0, description="never fire before this many seconds")


class Bound(Strict):
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.below is None and self.above is None:
            raise ValueError("give 'below' or 'above'")
        return self


class AnomalyConfig(Strict):
    nan: bool = Field(default=True, description="prune at once on a NaN or infinite reported value")
    slowdown: SlowdownConfig | None = None
    suspicious: dict[str, Bound] = Field(default_factory=dict, description="metric -> bound that flags a suspect")


class GatesConfig(Strict):
    static: StaticGateConfig = StaticGateConfig()
    median: MedianConfig | None = None
    parent_relative: ParentRelativeConfig | None = None
    patience: PatienceConfig | None = None
    anomaly: AnomalyConfig = AnomalyConfig()


def _unique_names(stages: list[StageConfig]) -> list[StageConfig]:
    names = [s.name for s in stages]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
    return stages


StageList = Annotated[list[StageConfig], Field(min_length=1), AfterValidator(_unique_names)]
