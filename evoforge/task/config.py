"""The task folder's `task.yaml`, as validated configuration (pydantic models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evoforge.analysis.settings import AnalysisSettings
from evoforge.experiment.gates.config import GatesConfig, StageList
from evoforge.llm.models import BanditSettings, ModelSpec, Price
from evoforge.memory.cognition.settings import KnowledgeSettings
from evoforge.memory.sampling.settings import IslandSettings, MapElitesSettings, WeightedSettings
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


class LLMSettings(Strict):
    """Where the researcher's language model lives. Keys are read from the environment, never from files."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    max_tokens: int = Field(default=4096, gt=0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    deadline_s: float = Field(default=600.0, gt=0, description="per call, all retries included")
    models: list[ModelSpec] = Field(default_factory=list, description="the ensemble; each 'provider/model'")
    bandit: BanditSettings = BanditSettings()
    prices: dict[str, Price] = Field(default_factory=dict, description="USD per million tokens, by model name")
    bench_after_failures: int = Field(default=3, ge=1, description="failed calls in a row that bench a model")
    bench_s: float = Field(default=120.0, ge=0, description="how long a benched model sits out")


class PatchWeights(Strict):
    """How often each kind of answer is asked for: SEARCH/REPLACE edits, a full rewrite, or a crossover of the
    parent with a second program (weights, need not sum to 1)."""

    diff: float = Field(default=1.0, ge=0.0)
    full: float = Field(default=0.0, ge=0.0)
    crossover: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _some_weight(self) -> PatchWeights:
        if self.diff + self.full + self.crossover <= 0:
            raise ValueError("research.patch_types: give at least one of diff, full, crossover a weight > 0")
        return self


class PromptBudget(Strict):
    """Token budgets (~4 characters a token) of the researcher's prompt sections; the whole prompt also stays
    within `context_tokens` less the reply's `llm.max_tokens`. The parent program is never cut."""

    program: int = Field(default=8000, gt=0, description="the current program (over it: a note, never a cut)")
    inspirations: int = Field(default=4000, ge=0, description="other programs shown for ideas")
    knowledge: int = Field(default=1500, ge=0, description="knowledge notes and the agenda")
    history: int = Field(default=1000, ge=0, description="recent failures and recently tried lines")
    context_tokens: int = Field(default=32768, gt=0, description="the model's context window")


class ResearchSettings(Strict):
    num_inspirations: int = Field(default=2, ge=0)
    num_failures: int = Field(default=3, ge=0)
    sampler: str = Field(default="ucb1", pattern="^(greedy|random|ucb1|weighted|islands|map_elites)$")
    population: int | None = Field(default=8, ge=1, description="UCB1 arms: the best N trials (null: all)")
    exploration: float = Field(default=1.0, ge=0.0, description="UCB1 exploration constant")
    edit_format: str = Field(default="diff", pattern="^(diff|full)$")
    islands: IslandSettings = IslandSettings()
    map_elites: MapElitesSettings = MapElitesSettings()
    weighted: WeightedSettings = WeightedSettings()
    patch_types: PatchWeights | None = Field(default=None, description="null: always edit_format")
    prompt_budget: PromptBudget = PromptBudget()
    seed_repairs: int = Field(default=2, ge=0, description="a failing seed: how many times an LLM researcher is "
                              "asked to repair it from its error (each a trial) before the run stops")


class TaskConfig(Strict):
    name: str = Field(description="defaults to the task folder's name")
    problem: str = Field(description="path of the problem text, relative to the task folder, or the text itself")
    program: str = Field(description="path of the seed program, relative to the task folder")
    evaluator: str | None = Field(default=None, description="Python file defining evaluate(program_path)")
    command: str | None = Field(default=None, description="shell command; {program} is the candidate path")
    objective: Objective = Objective()
    timeout_s: float = Field(default=300.0, gt=0)
    limits: Limits = Limits()
    llm: LLMSettings = LLMSettings()
    research: ResearchSettings = ResearchSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    prompts: str | None = Field(default=None, description="folder of jinja2 templates to override")
    target_score: float | None = None
    stages: StageList | None = Field(default=None, description="evaluation cascade, cheapest stage first")
    gates: GatesConfig = GatesConfig()
    hidden: list[str] = Field(default_factory=list, description="task files and folders only the evaluator's "
                              "process sees (e.g. evaluator.py, data/test/); the candidate's jail empties them")
    layout: str = Field(default="evoforge", pattern="^(evoforge|openevolve|asi-evolve)$",
                        description="whose conventions the evaluator follows (see evoforge/task/foreign.py)")

    @model_validator(mode="after")
    def _one_evaluator(self) -> TaskConfig:
        if (self.evaluator is None) == (self.command is None):
            raise ValueError("give exactly one of 'evaluator' (a Python file) or 'command' (a shell command)")
        return self
