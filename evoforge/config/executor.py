"""Where a task's evaluations run: the executor section of task.yaml (`executor: {kind: ray, address: auto,
resources: {num_gpus: 1}}`), read by evoforge/experiment/executors."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from evoforge.config._base import Strict

RAY_ADDRESS_HELP = ("'auto' (the Ray cluster this machine belongs to), 'ray://HOST:PORT' (Ray Client), HOST:PORT "
                    "(a head node's GCS), or 'local' (a Ray started here by evoforge)")


class ExecutorResources(Strict):
    """What one stage run asks the Ray cluster for; Ray places it on a node that has all of it, never more runs on
    a node than its resources hold."""

    num_cpus: float = Field(default=1.0, ge=0, description="CPUs held while a stage runs")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs held while a stage runs (Ray sets "
                            "CUDA_VISIBLE_DEVICES on the node; it reaches the sandbox)")
    accelerator_type: str | None = Field(default=None, description="a node's accelerator type, e.g. A100 (Ray's "
                                         "accelerator_type:NAME resource)")
    custom: dict[str, float] = Field(default_factory=dict, description="custom node resources (`ray start "
                                     "--resources`), e.g. {big_disk: 1}")

    @field_validator("custom")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount <= 0:
                raise ValueError(f"custom resource {name!r} must be > 0 (got {amount:g})")
        return value

    def ray_resources(self) -> dict[str, float]:
        """The resources as Ray names them (CPU, GPU, accelerator_type:NAME, custom), zero amounts left out."""
        wanted = {"CPU": self.num_cpus, "GPU": self.num_gpus, **self.custom}
        if self.accelerator_type:
            wanted[f"accelerator_type:{self.accelerator_type}"] = 0.001  # Ray's own amount for this label
        return {name: amount for name, amount in wanted.items() if amount > 0}


class ExecutorConfig(Strict):
    """`kind: local` (default): the evaluator runs in the sandbox on this machine, `gpus_per_trial` GPUs of its own
    per stage; `kind: ray`: each stage runs on a Ray cluster's node, in the same sandbox there."""

    kind: Literal["local", "ray"] = "local"
    gpus_per_trial: int = Field(default=0, ge=0, le=64, description="local: GPUs each running stage owns "
                                "(CUDA_VISIBLE_DEVICES); stages wait for free ones")
    gpus: list[int | str] | None = Field(default=None, description="local: this machine's GPU ids (default: "
                                         "CUDA_VISIBLE_DEVICES if set, else nvidia-smi -L, else none)")
    address: str | None = Field(default=None, description=f"ray: the cluster; {RAY_ADDRESS_HELP}; none: 'local'")
    resources: ExecutorResources = ExecutorResources()
    retries: int = Field(default=1, ge=0, le=10, description="ray: runs of a stage again, on another worker, when "
                         "its worker or node dies; then the trial fails as executor_lost")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(f"empty address; give {RAY_ADDRESS_HELP}")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> ExecutorConfig:
        if self.kind == "ray" and (self.gpus_per_trial or self.gpus is not None):
            raise ValueError("gpus_per_trial and gpus are for kind: local; on Ray give resources: {num_gpus: N}")
        return self
