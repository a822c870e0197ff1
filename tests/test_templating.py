"""Prompt template sets: compiled once per process and shared, so a set built per prompt costs nothing; an
override edited meanwhile is still read again, and a broken one is still refused."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import jinja2.runtime
import pytest

from evoforge.analysis.prompts import AnalysisPrompts
from evoforge.errors import TaskError
from evoforge.research.prompts import Prompts


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


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The names of the templates jinja2 renders from now on (each render makes one context)."""
    seen: list[str | None] = []
    init = jinja2.runtime.Context.__init__

    def counting(self: jinja2.runtime.Context, environment: jinja2.Environment, parent: dict, name: str | None,
                 *args: object, **kwargs: object) -> None:
        seen.append(name)
        init(self, environment, parent, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jinja2.runtime.Context, "__init__", counting)
    return seen


SYSTEM = {"program_name": "main.py", "metric": "score", "maximize": True, "patch_type": "diff", "language": "python",
          "has_blocks": False}


def test_the_system_message_is_rendered_once_per_inputs(renders: list[str | None]) -> None:
    prompts = Prompts()
    first = prompts.render("system.j2", SYSTEM)
    assert Prompts().render("system.j2", dict(SYSTEM)) == first  # another set, equal values: the same text
    assert renders == ["system.j2"]
    full = prompts.render("system.j2", {**SYSTEM, "patch_type": "full"})  # another input: rendered
    assert full != first and "SEARCH" not in full and renders == ["system.j2"] * 2
    lower = prompts.render("system.j2", {**SYSTEM, "maximize": False})
    assert "lower is better" in lower and "higher is better" in first


def test_inputs_that_print_differently_are_told_apart(tmp_path: Path) -> None:
    (tmp_path / "novelty.j2").write_text("[{{ candidate_code }}]")
    prompts = AnalysisPrompts(tmp_path)
    texts = [prompts.render("novelty.j2", {"candidate_code": value}) for value in (True, 1, 1.0, "1", None, 0.0, -0.0)]
    assert texts == ["[True]\n", "[1]\n", "[1.0]\n", "[1]\n", "[None]\n", "[0.0]\n", "[-0.0]\n"]


def test_an_edited_override_is_not_served_from_the_memo(tmp_path: Path, renders: list[str | None]) -> None:
    template = tmp_path / "novelty.j2"
    template.write_text("one {{ candidate_code }}")
    prompts = AnalysisPrompts(tmp_path)
    assert [prompts.render("novelty.j2", {"candidate_code": "x"}) for _ in range(2)] == ["one x\n"] * 2
    assert len(renders) == 1
    template.write_text("two {{ candidate_code }}")
    later = template.stat().st_mtime + 5
    os.utime(template, (later, later))
    assert prompts.render("novelty.j2", {"candidate_code": "x"}) == "two x\n"


@pytest.mark.parametrize("text", [
    "{{ candidate_code }} {{ range(2) | list }}",  # a global function: not an input
    "{{ candidate_code }} {{ ['a', 'b'] | random }}",  # chance: not the same text each time
    "{{ candidate_code }} {{ near_code }}",  # an input that is not a plain value
    "{{ candidate_code * 500 }}",  # a long input: not kept
])
def test_what_is_not_memoized_is_rendered_each_time(tmp_path: Path, renders: list[str | None], text: str) -> None:
    (tmp_path / "novelty.j2").write_text(text)
    prompts = AnalysisPrompts(tmp_path)
    code = "x" * 500 if "500" in text else "x"
    for _ in range(2):
        prompts.render("novelty.j2", {"candidate_code": code, "near_code": ["not", "plain"]})
    assert len(renders) == 2


def test_the_built_in_templates_are_not_checked_on_disk_per_render(monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = Prompts()
    checked: list[str] = []
    getmtime = os.path.getmtime
    monkeypatch.setattr(os.path, "getmtime", lambda path: checked.append(path) or getmtime(path))
    prompts.render("system.j2", {**SYSTEM, "metric": "loss"})
    assert checked == []


def test_a_render_gives_what_jinja2_gives(tmp_path: Path) -> None:
    """Rendered without jinja2's own `render` (a leaner context): the same text, globals and filters included, and
    an error names the template."""
    (tmp_path / "novelty.j2").write_text(
        "{% for i in range(2) %}{{ i }}{{ candidate_code | clip(3) }}{% endfor %} {{ near_code | score }}"
        "{% set x = 4 %}{{ x }}{{ joiner(',')() }}")
    (tmp_path / "review.j2").write_text("{{ missing_value }}")
    prompts = AnalysisPrompts(tmp_path)
    values = {"candidate_code": "abcdef", "near_code": 0.123456789}
    assert prompts.render("novelty.j2", values) == prompts.env.get_template("novelty.j2").render(values) + "\n"
    assert prompts.render("novelty.j2", values) == "0ab…1ab… 0.1234574\n"
    with pytest.raises(TaskError, match="review.j2.*missing_value"):
        prompts.render("review.j2", {})
