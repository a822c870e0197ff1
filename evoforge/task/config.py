"""The task folder's `task.yaml`, as validated configuration (pydantic models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evoforge.models import Direction


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(Strict):
    metric: str = "score"
    direction: Direction = Direction.MAXIMIZE


class Limits(Strict):
    """Resource limits applied to the evaluator subprocess (rlimits set in the child before exec)."""

    memory_mb: int | None = Field(default=4096, gt=0, description="address-space limit (RLIMIT_AS)")
    cpu_s: int | None = Field(default=None, gt=0, description="CPU-time limit (RLIMIT_CPU)")
    output_bytes: int = Field(default=1_000_000, gt=0, description="cap on captured stdout/stderr, each")


class LLMSettings(Strict):
    """Where the researcher's language model lives. Keys are read from the environment, never from files."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=4096, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)


class ResearchSettings(Strict):
    num_inspirations: int = Field(default=2, ge=0)
    num_failures: int = Field(default=3, ge=0)
    sampler: str = Field(default="ucb1", pattern="^(greedy|random|ucb1)$")
    population: int | None = Field(default=8, ge=1, description="UCB1 arms: the best N trials (null: all)")
    exploration: float = Field(default=1.0, ge=0.0, description="UCB1 exploration constant")
    edit_format: str = Field(default="diff", pattern="^(diff|full)$")


class TaskConfig(Strict):
    name: str
    problem: str = Field(description="path of the problem text, relative to the task folder")
    program: str = Field(description="path of the seed program, relative to the task folder")
    evaluator: str | None = Field(default=None, description="Python file defining evaluate(program_path)")
    command: str | None = Field(default=None, description="shell command; {program} is the candidate path")
    objective: Objective = Objective()
    timeout_s: float = Field(default=300.0, gt=0)
    limits: Limits = Limits()
    llm: LLMSettings = LLMSettings()
    research: ResearchSettings = ResearchSettings()
    prompts: str | None = Field(default=None, description="folder of jinja2 templates to override")
    target_score: float | None = None

    @model_validator(mode="after")
    def _one_evaluator(self) -> TaskConfig:
        if (self.evaluator is None) == (self.command is None):
            raise ValueError("give exactly one of 'evaluator' (a Python file) or 'command' (a shell command)")
        return self
