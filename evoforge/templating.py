"""Prompt templates shared by the researcher and the analyzer: jinja2 files shipped with evoforge, any of which a
task's `prompts` folder overrides by file name; syntax errors surface when the set is built, not mid-run.
Compiled templates are shared by every set of the same files in the process, so building a set is cheap."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import jinja2

from evoforge.errors import TaskError

if TYPE_CHECKING:
    from evoforge.task.loader import Task


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


@functools.lru_cache(maxsize=32)
def _environment(builtin: Path, override: Path | None) -> jinja2.Environment:
    """The jinja2 environment of one pair of folders, built once per process: it keeps the compiled templates (an
    override file edited meanwhile is read again, as jinja2 checks its time stamp), so a set built per prompt, as the
    novelty judge and the review do, does not parse its template again."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(builtin))]
    if override is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(override)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=False, autoescape=False,
    )
    env.filters["score"] = score_text
    env.filters["clip"] = clip
    return env


class TemplateSet:
    """A named set of templates (`NAMES`) from `BUILTIN`, each overridable by a file of the same name."""

    BUILTIN: ClassVar[Path]
    NAMES: ClassVar[tuple[str, ...]]

    def __init__(self, override: Path | None = None) -> None:
        self.override = override
        self.env = _environment(self.BUILTIN, override)
        for name in self.NAMES:  # template syntax errors surface now, not mid-run
            try:
                self.env.get_template(name)
            except jinja2.TemplateError as exc:
                raise TaskError(f"prompt template {self._where(name)}: {exc}; fix the template") from None

    @classmethod
    def for_task(cls, task: Task) -> Self:
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
