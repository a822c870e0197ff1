"""Plain data passed between the pillars: trial states, proposals, outcomes, digests and recorded trials.

Every pillar speaks these types and nothing else; none of them carries behaviour beyond small helpers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any


class TrialStatus(StrEnum):
    """Life cycle of a trial in the record."""

    PROPOSED = "proposed"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PRUNED = "pruned"
    REJECTED = "rejected"  # refused before evaluation (e.g. not novel): no evaluation time spent

    @property
    def finished(self) -> bool:  # a set lookup: asked of many trials per trial (a member lookup on the class is slow)
        return self in FINISHED


FINISHED = frozenset({TrialStatus.SUCCEEDED, TrialStatus.FAILED, TrialStatus.PRUNED, TrialStatus.REJECTED})
EVALUATED = FINISHED - {TrialStatus.REJECTED}  # finished with an evaluation (or a failure) behind it


class Direction(StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when score `a` is strictly better than score `b`."""
        return a > b if self is Direction.MAXIMIZE else a < b

    def sign(self) -> float:
        return 1.0 if self is Direction.MAXIMIZE else -1.0


@dataclass(frozen=True)
class LLMCall:
    """One call to a language model, as the record stores it (never holds an API key)."""

    role: str  # "researcher", "repair", "analyzer", ...
    model: str
    prompt: str
    response: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cost_usd: float = 0.0  # priced from the model's price table; 0 for unknown or free models
    temperature: float | None = None
    retries: int = 0  # failed attempts before this answer (429, 5xx, timeouts, broken bodies)


class ProposalStatus(StrEnum):
    """What became of a proposal, which decides what the loop records."""

    READY = "ready"  # a candidate to evaluate
    FAILED = "failed"  # no usable program (unparseable answer, edits that do not apply): a failed trial
    NOT_NOVEL = "not_novel"  # the novelty gate refused it: a rejected trial, never evaluated
    UNREACHABLE = "unreachable"  # no model could be reached: no trial (the loop tries again or stops)


@dataclass(frozen=True)
class Proposal:
    """What the researcher hands the engineer: a named hypothesis and the candidate program.

    `status` says whether it is ready to evaluate; `error` says why not (a proposal given an error and no status
    is FAILED). A failed proposal becomes a failed trial with that reason, a not-novel one a rejected trial.
    """

    name: str
    motivation: str
    code: str
    proposer: str  # "offline" or "llm"
    model: str | None = None
    error: str | None = None
    llm_calls: tuple[LLMCall, ...] = ()
    extra_parent_ids: tuple[int, ...] = ()  # a crossover's second parent(s), besides the sampled one
    facts: dict[str, Any] = field(default_factory=dict)  # what the proposer decided (model arm, temperature, ...)
    status: ProposalStatus = ProposalStatus.READY

    def __post_init__(self) -> None:
        if self.error is not None and self.status is ProposalStatus.READY:
            object.__setattr__(self, "status", ProposalStatus.FAILED)

    @property
    def unreachable(self) -> bool:
        return self.status is ProposalStatus.UNREACHABLE


@dataclass(frozen=True)
class TelemetryPoint:
    """One metric value streamed while a stage runs (`t`: seconds since the stage started)."""

    stage: str
    step: int | None
    name: str
    value: float
    t: float


@dataclass(frozen=True)
class GateDecision:
    """A gate's verdict with its evidence. action: "prune" (stopped the trial), "flag" (marked suspect),
    "promote" (let it into the next stage), "reject" (refused before running), "reuse" (duplicate program)."""

    gate: str  # "static", "duplicate", "stage", "median", "parent_relative", "patience", "anomaly", ...
    stage: str | None
    action: str
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageResult:
    """The result of one stage of an evaluation cascade."""

    name: str
    status: TrialStatus  # SUCCEEDED (ran to the end), FAILED, or PRUNED (stopped by a gate)
    score: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error_class: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What the engineer returns for one evaluation."""

    status: TrialStatus  # SUCCEEDED, FAILED or PRUNED
    score: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error_class: str | None = None  # "timeout", "crash:ValueError", "bad_result", "killed_by_limit", "pruned:median"
    error_message: str | None = None
    seconds: float = 0.0
    seconds_saved: float = 0.0
    stdout_tail: str = ""
    stderr_tail: str = ""
    stages: tuple[StageResult, ...] = ()
    telemetry: tuple[TelemetryPoint, ...] = ()
    decisions: tuple[GateDecision, ...] = ()
    suspect: bool = False  # a monitor found the result too good to trust: re-evaluate before crowning it
    reused_from: int | None = None  # the trial whose outcome this duplicate program reuses


Curve = tuple[tuple[int, float, float], ...]  # (step, value, t) points of one metric in one stage, by step


@dataclass(frozen=True)
class EvaluationHistory:
    """What the gates compare a running trial with, built by the loop from the record (plain data).

    stage_scores: past trials' final scores per stage name; parent_stage_scores: the parent's, per stage;
    curves[stage][metric]: the curves of past trials that completed that stage; parent_curves[stage][metric]:
    the parent's; full_seconds: evaluation seconds of past trials that ran every stage (for savings).
    """

    stage_scores: dict[str, list[float]] = field(default_factory=dict)
    parent_stage_scores: dict[str, float] = field(default_factory=dict)
    curves: dict[str, dict[str, list[Curve]]] = field(default_factory=dict)
    parent_curves: dict[str, dict[str, Curve]] = field(default_factory=dict)
    full_seconds: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Digest:
    """The analyzer's deterministic summary of one outcome."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    """A trial as it stands in the Database of Record."""

    id: int
    status: TrialStatus
    parent_ids: tuple[int, ...] = ()
    inspiration_ids: tuple[int, ...] = ()
    name: str = ""
    motivation: str = ""
    code: str = ""
    diff: str = ""
    score: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error_class: str | None = None
    error_message: str | None = None
    seconds: float = 0.0
    seconds_saved: float = 0.0
    proposer: str = ""
    model: str | None = None
    digest: str = ""
    suspect: bool = False
    reused_from: int | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # what the sampler and proposer decided (see tables.py)

    @cached_property
    def scored(self) -> bool:  # cached: samplers ask it of every trial, every time
        """A succeeded trial with a finite score that was really evaluated and is trusted: a reused duplicate is
        not a new point, and a suspect result is never crowned or built on until re-evaluated."""
        ok = self.status is TrialStatus.SUCCEEDED and self.score is not None and math.isfinite(self.score)
        return ok and self.reused_from is None and not self.suspect


@dataclass(frozen=True)
class NoveltyDecision:
    """The novelty gate's verdict on a proposal: `near` is the evaluated trial it repeats (None: it is novel), with
    the judge's LLM calls when one was asked."""

    near: Trial | None = None
    llm_calls: tuple[LLMCall, ...] = ()

    @property
    def novel(self) -> bool:
        return self.near is None
