"""Builds the researcher's chat messages from jinja2 templates; a task's `prompts` folder overrides any."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

from evoforge.errors import TaskError
from evoforge.models import Direction
from evoforge.research.context import ResearchContext
from evoforge.task.loader import Task

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


def score_text(value: object) -> str:
    """A score or metric for the prompt: floats with 6 significant digits, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def clip(text: object, limit: int = 300) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Prompts:
    """The three templates (system, user, repair), each from the task's folder if there, else built in."""

    def __init__(self, override: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(TEMPLATES))]
        if override is not None:
            loaders.insert(0, jinja2.FileSystemLoader(str(override)))
        self.override = override
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            autoescape=False,
        )
        self.env.filters["score"] = score_text
        self.env.filters["clip"] = clip
        for name in TEMPLATE_NAMES:  # template syntax errors surface now, not mid-run
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as exc:
                raise TaskError(f"prompt template {self._where(name)}: {exc}; fix the template") from None

    @classmethod
    def for_task(cls, task: Task) -> Prompts:
        if not task.config.prompts:
            return cls()
        folder = (task.root / task.config.prompts).resolve()
        if not folder.is_dir():
            raise TaskError(
                f"task.yaml field 'prompts': {folder} is not a folder; create it or remove the field"
            )
        return cls(folder)

    def _where(self, name: str) -> str:
        if self.override is not None and (self.override / name).is_file():
            return str(self.override / name)
        return f"{name} (built in)"

    def render(self, name: str, values: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(**values).strip() + "\n"
        except jinja2.TemplateError as exc:
            raise TaskError(f"prompt template {self._where(name)}: {exc}; fix the template") from None

    def messages(self, task: Task, ctx: ResearchContext) -> list[dict[str, str]]:
        """The first request: system and user messages for `ctx`."""
        values = template_values(task, ctx)
        return [
            {"role": "system", "content": self.render("system.j2", values)},
            {"role": "user", "content": self.render("user.j2", values)},
        ]

    def repair(self, task: Task, ctx: ResearchContext, error: str) -> str:
        """The user message of the repair round, quoting the exact error."""
        return self.render("repair.j2", {**template_values(task, ctx), "error": error})


def template_values(task: Task, ctx: ResearchContext) -> dict[str, Any]:
    """Everything a template may use (see the built-in templates for examples)."""
    return {
        "problem": ctx.problem.strip(),
        "program_name": ctx.program_name,
        "language": LANGUAGES.get(Path(ctx.program_name).suffix, ""),
        "metric": ctx.metric,
        "direction": ctx.direction.value,
        "maximize": ctx.direction is Direction.MAXIMIZE,
        "parent": ctx.parent,
        "parent_digest": ctx.parent_digest.strip(),
        "inspirations": list(ctx.inspirations),
        "failures": list(ctx.failures),
        "recent": list(ctx.recent),
        "parent_analysis": ctx.parent_analysis.strip(),
        "knowledge": list(ctx.knowledge),
        "agenda": ctx.agenda.strip(),
        "near_duplicate": ctx.near_duplicate,
        "edit_format": task.config.research.edit_format,
    }
