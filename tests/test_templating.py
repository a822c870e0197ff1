"""Prompt template sets: compiled once per process and shared, so a set built per prompt costs nothing; an
override edited meanwhile is still read again, and a broken one is still refused."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

from evoforge.analysis.prompts import AnalysisPrompts
from evoforge.errors import TaskError


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The template files jinja2 reads (to compile them) from now on."""
    seen: list[str] = []
    get_source = jinja2.FileSystemLoader.get_source

    def counting(self: jinja2.FileSystemLoader, environment: jinja2.Environment, template: str) -> object:
        seen.append(template)
        return get_source(self, environment, template)

    monkeypatch.setattr(jinja2.FileSystemLoader, "get_source", counting)
    return seen


def test_a_second_set_reads_no_template_again(loads: list[str]) -> None:
    AnalysisPrompts()  # may read them (once per process)
    loads.clear()
    values = {"candidate_motivation": "m", "candidate_code": "x = 1", "near_motivation": "n", "near_code": "x = 2"}
    first = AnalysisPrompts().render("novelty.j2", values)
    assert AnalysisPrompts().render("novelty.j2", values) == first
    assert loads == []


def test_an_edited_override_is_read_again(tmp_path: Path) -> None:
    template = tmp_path / "novelty.j2"
    template.write_text("one {{ candidate_code }}")
    assert AnalysisPrompts(tmp_path).render("novelty.j2", {"candidate_code": "x"}) == "one x\n"
    template.write_text("two {{ candidate_code }}")
    later = template.stat().st_mtime + 5
    os.utime(template, (later, later))
    assert AnalysisPrompts(tmp_path).render("novelty.j2", {"candidate_code": "x"}) == "two x\n"


def test_a_broken_override_is_refused_every_time(tmp_path: Path) -> None:
    (tmp_path / "review.j2").write_text("{% if %}")
    for _ in range(2):
        with pytest.raises(TaskError, match="review.j2"):
            AnalysisPrompts(tmp_path)
