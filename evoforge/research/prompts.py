"""Builds the researcher's chat messages from jinja2 templates; a task's `prompts` folder overrides any.

The values passed to the templates are trimmed to the prompt's token budgets (see research/budget.py), and
carry the proposal's patch type: "diff" (SEARCH/REPLACE edits), "full" (a rewrite) or "crossover" (combine the
parent with a second program, the first inspiration).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evoforge.models import Direction, Trial
from evoforge.research.budget import Plan, estimate_tokens, fit_items, plan_prompt, truncate_to_tokens
from evoforge.research.context import KnowledgeNote, ResearchContext
from evoforge.research.edits import find_blocks
from evoforge.task.loader import Task
from evoforge.templating import TemplateSet

FIXED_OVERHEAD_TOKENS = 600  # instructions and headings of the built-in system and user templates

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_NAMES = ("system.j2", "user.j2", "repair.j2")
LANGUAGES = {
    ".py": "python",
    ".sh": "bash",
    ".js": "javascript",
    ".ts": "typescript",
    ".rs": "rust",
    ".c": "c",
    ".cpp": "cpp",
    ".cu": "cuda",
    ".go": "go",
    ".jl": "julia",
    ".yaml": "yaml",
}


@functools.lru_cache(maxsize=64)
def language_of(program_name: str) -> str:
    """The code fence's language for a program file ("" when unknown)."""
    return LANGUAGES.get(Path(program_name).suffix, "")


@functools.lru_cache(maxsize=64)  # a parent is shown to several proposals: its lines are scanned once
def has_blocks(code: str, program_name: str) -> bool:
    """Whether `code` marks EVOLVE-BLOCKs (then only their lines may change)."""
    return bool(find_blocks(code.split("\n"), program_name))


class Prompts(TemplateSet):
    """The three templates (system, user, repair), each from the task's folder if there, else built in."""

    BUILTIN = TEMPLATES
    NAMES = TEMPLATE_NAMES

    def messages(
        self, task: Task, ctx: ResearchContext, *, patch_type: str | None = None
    ) -> list[dict[str, str]]:
        """The first request: system and user messages for `ctx`, asking for a `patch_type` answer
        (None: the task's research.edit_format)."""
        values = template_values(task, ctx, patch_type=patch_type)
        return [
            {"role": "system", "content": self.render("system.j2", values)},
            {"role": "user", "content": self.render("user.j2", values)},
        ]

    def repair(
        self, task: Task, ctx: ResearchContext, error: str, *, patch_type: str | None = None, closest: str = ""
    ) -> str:
        """The user message of the repair round, quoting the exact error; `closest` (EditError.closest) is the
        program region nearest a SEARCH block that matched nothing, shown so the model can copy it exactly."""
        values = template_values(task, ctx, patch_type=patch_type)
        return self.render("repair.j2", {**values, "error": error, "closest": closest})


def template_values(task: Task, ctx: ResearchContext, *, patch_type: str | None = None) -> dict[str, Any]:
    """Everything a template may use (see the built-in templates for examples), trimmed to the prompt budget."""
    research = task.config.research
    patch = patch_type or research.edit_format
    if patch not in ("diff", "full", "crossover"):
        raise ValueError(f"unknown patch type {patch!r}: use diff, full or crossover")
    inspirations = list(ctx.inspirations)
    partner = inspirations.pop(0) if patch == "crossover" and inspirations else None
    if patch == "crossover" and partner is None:
        patch = "full"  # nothing to cross with: a rewrite of the parent
    values: dict[str, Any] = {
        "problem": ctx.problem.strip(),
        "program_name": ctx.program_name,
        "language": language_of(ctx.program_name),
        "metric": ctx.metric,
        "direction": ctx.direction.value,
        "maximize": ctx.direction is Direction.MAXIMIZE,
        "parent": ctx.parent,
        "parent_digest": ctx.parent_digest.strip(),
        "parent_analysis": ctx.parent_analysis.strip(),
        "agenda": ctx.agenda.strip(),
        "near_duplicate": ctx.near_duplicate,
        "fix_error": ctx.fix_error.strip(),
        "patch_type": patch,
        "edit_format": "diff" if patch == "diff" else "full",
        "partner": partner,
        "has_blocks": has_blocks(ctx.parent.code, ctx.program_name),
    }
    fixed = FIXED_OVERHEAD_TOKENS + sum(
        estimate_tokens(values[key]) for key in ("problem", "parent_digest", "parent_analysis", "agenda")
    )
    program = estimate_tokens(ctx.parent.code) + (estimate_tokens(partner.code) if partner else 0)
    plan = plan_prompt(
        research.prompt_budget, reply_tokens=task.config.llm.max_tokens, fixed_tokens=fixed, program_tokens=program
    )
    return {**values, **trimmed_sections(plan, inspirations, ctx.knowledge, ctx.failures, ctx.recent)}


def trimmed_sections(
    plan: Plan,
    inspirations: Sequence[Trial],
    knowledge: Sequence[KnowledgeNote],
    failures: Sequence[Trial],
    recent: Sequence[Trial],
) -> dict[str, Any]:
    """The trimmable sections within `plan`'s limits, `omitted` (items left out per section) and `budget_note`."""
    kept_inspirations, out_inspirations = fit_items(
        inspirations, _inspiration_cost, plan.inspirations, _shrink_inspiration
    )
    kept_knowledge, out_knowledge = fit_items(knowledge, _knowledge_cost, plan.knowledge, _shrink_note)
    kept_failures, out_failures = fit_items(failures, _failure_cost, plan.history, _shrink_failure)
    room = plan.history - sum(_failure_cost(trial) for trial in kept_failures)
    kept_recent, out_recent = fit_items(recent, _recent_cost, max(0, room))
    return {
        "inspirations": kept_inspirations,
        "knowledge": kept_knowledge,
        "failures": kept_failures,
        "recent": kept_recent,
        "omitted": {
            "inspirations": out_inspirations,
            "knowledge": out_knowledge,
            "failures": out_failures,
            "recent": out_recent,
        },
        "budget_note": plan.program_note,
    }


def _inspiration_cost(trial: Trial) -> int:
    return estimate_tokens(trial.code) + estimate_tokens(trial.name) + 12


def _shrink_inspiration(trial: Trial, tokens: int) -> Trial:
    room = tokens - _inspiration_cost(dataclasses.replace(trial, code=""))
    return dataclasses.replace(trial, code=truncate_to_tokens(trial.code, max(0, room)))


def _knowledge_cost(note: KnowledgeNote) -> int:
    return estimate_tokens(note.title + note.content[:500] + note.trigger[:200] + note.kind) + 8


def _shrink_note(note: KnowledgeNote, tokens: int) -> KnowledgeNote:
    room = tokens - _knowledge_cost(dataclasses.replace(note, content=""))
    return dataclasses.replace(note, content=truncate_to_tokens(note.content, max(0, room)))


def _failure_cost(trial: Trial) -> int:
    text = trial.name + (trial.error_class or "") + (trial.error_message or "")[:300]
    return estimate_tokens(text) + 6


def _shrink_failure(trial: Trial, tokens: int) -> Trial:
    room = tokens - _failure_cost(dataclasses.replace(trial, error_message=""))
    return dataclasses.replace(trial, error_message=truncate_to_tokens(trial.error_message or "", max(0, room)))


def _recent_cost(trial: Trial) -> int:
    return estimate_tokens(trial.name) + 10
