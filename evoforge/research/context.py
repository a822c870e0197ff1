"""What the researcher sees for one proposal: problem, parent trial, inspirations, failures, recent trials."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from evoforge.models import Direction, Trial


@dataclass(frozen=True)
class KnowledgeNote:
    """One knowledge item as the researcher is shown it (retrieved from the cognition base by the loop)."""

    id: int
    kind: str
    title: str
    content: str
    trigger: str = ""
    support: int = 1


@dataclass(frozen=True)
class ResearchContext:
    """Everything a proposer may use, gathered by the loop from the record.

    `recent` is the run's latest finished trials (any order); the offline proposer adapts its step size from
    them, counting only those whose parent is among `recent`, `parent`, `inspirations` or `failures`.
    """

    problem: str
    program_name: str
    metric: str
    direction: Direction
    parent: Trial
    inspirations: Sequence[Trial] = ()
    failures: Sequence[Trial] = ()
    recent: Sequence[Trial] = ()
    parent_digest: str = ""  # the analyzer's digest of the parent
    parent_analysis: str = ""  # the analyzer's causal analysis of the parent, when one was written
    knowledge: Sequence[KnowledgeNote] = ()  # cognition-base items retrieved for this round
    agenda: str = ""  # the latest research agenda (directions, dead ends)
    near_duplicate: Trial | None = None  # set when a first proposal was too close to this evaluated trial
    fix_error: str = ""  # set when the parent fails (the seed, before anything scored): its error, to repair
