"""Renders the analyzer's prompts (analysis, repair, review, novelty) from jinja2 templates; a task's `prompts`
folder overrides any of them by file name, as it does for the researcher's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from evoforge.errors import TaskError
from evoforge.research.prompts import clip, score_text

if TYPE_CHECKING:
    from evoforge.task.loader import Task

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_NAMES = ("analysis.j2", "analysis_repair.j2", "review.j2", "novelty.j2")


class AnalysisPrompts:
    """The analyzer's templates, each from the override folder if there, else built in."""

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
    def for_task(cls, task: Task) -> AnalysisPrompts:
        """The task's overrides (task.yaml `prompts`), else the built-in templates."""
        if not task.config.prompts:
            return cls()
        folder = (task.root / task.config.prompts).resolve()
        if not folder.is_dir():
            raise TaskError(f"task.yaml field 'prompts': {folder} is not a folder; create it or remove the field")
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
