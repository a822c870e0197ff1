"""`evoforge report`: a research report of one run — a self-contained HTML file (plots inline as SVG, no network)
and its Markdown twin — read from the run's record, plus the champion's program to reproduce its evaluation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from evoforge.models import TrialStatus
from evoforge.report.collect import ReportData, collect
from evoforge.report.plots import PlotsUnavailable, best_so_far, score_plot
from evoforge.templating import score_text

__all__ = ["PlotsUnavailable", "ReportFiles", "collect", "write_report"]

_TEMPLATES = Path(__file__).with_name("templates")
STATUSES = [s.value for s in TrialStatus if s.finished]


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    champion: Path | None


def _fmt(value: Any) -> str:
    return "—" if value is None else score_text(value)


def _fmt_effect(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4g}"


def _md(text: Any) -> str:
    """Text for a Markdown table cell or list item: one line, pipes and HTML brackets escaped."""
    flat = " ".join(str(text).split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in `text`, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_TEMPLATES)), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals.update(fence=_fence, fmt=_fmt, fmt_effect=_fmt_effect, md=_md, statuses=STATUSES)
    return env


def write_report(run_dir: Path, out: Path | None = None) -> ReportFiles:
    """Write RUN_DIR/report.html (or `out`), the Markdown twin beside it (same name, .md) and the champion's program
    (`<name>.champion.py`, named by the reproduce command). Raises PlotsUnavailable without matplotlib."""
    run_dir = Path(run_dir).resolve()
    html_path = (Path(out) if out is not None else run_dir / "report.html").resolve()
    html_path.parent.mkdir(parents=True, exist_ok=True)
    champion_path = html_path.with_name(html_path.stem + ".champion.py")
    data: ReportData = collect(run_dir, champion_path)
    band = {"crownings": data.crownings, "stderr": data.crowned_stderr}
    figures = {"by_trial": score_plot(data.points, data.direction, by="trial_id", **band),
               "by_time": score_plot(data.points, data.direction, by="at_s", **band)}
    context = dict(d=data, ov=data.overview, figures=figures, figures_note="",
                   champion_line=best_so_far(data.points, data.direction, "trial_id"),
                   champion_file=champion_path.name, html_name=html_path.name)
    html_path.write_text(_environment(True).get_template("report.html.j2").render(**context), encoding="utf-8")
    md_path = html_path.with_suffix(".md")
    md_path.write_text(_environment(False).get_template("report.md.j2").render(**context), encoding="utf-8")
    champion = None
    if data.champion is not None:
        champion_path.write_text(data.champion.code or "", encoding="utf-8")
        champion = champion_path
    return ReportFiles(html_path, md_path, champion)


