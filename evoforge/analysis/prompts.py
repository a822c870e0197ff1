"""Renders the analyzer's prompts (analysis, repair, review, novelty) from jinja2 templates; a task's `prompts`
folder overrides any of them by file name, as it does for the researcher's."""

from __future__ import annotations

from pathlib import Path

from evoforge.templating import TemplateSet

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_NAMES = ("analysis.j2", "analysis_repair.j2", "review.j2", "novelty.j2")


class AnalysisPrompts(TemplateSet):
    """The analyzer's templates, each from the override folder if there, else built in."""

    BUILTIN = TEMPLATES
    NAMES = TEMPLATE_NAMES
