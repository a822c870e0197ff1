"""What a research report says, gathered from a run's record (read-only) as plain data: the problem, the trials'
scores over trials and time, the champion and its lineage, the lessons, failures, gate savings and spend."""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from evoforge.memory.champion_log import ChampionDecision
from evoforge.memory.record import Record
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.views import run_direction, run_overview

TOP_LESSONS = 8
MOTIVATION_CHARS = 600


@dataclass(frozen=True)
class Point:
    """One trial on the score plots."""

    trial_id: int
    status: str
    score: float | None
    at_s: float  # seconds from the run's first trial


@dataclass(frozen=True)
class Step:
    """One step of the champion's lineage: a trial, what it tried, how much code it changed and what that did."""

    trial_id: int
    name: str
    motivation: str
    score: float | None
    effect: float | None  # score minus the parent's (None for the seed or an unscored parent)
    lines_added: int
    lines_removed: int
    stderr: float | None = None  # of a score that is the mean of repeated evaluations


@dataclass(frozen=True)
class Lesson:
    title: str
    content: str
    kind: str
    support: int
    contradictions: int
    provenance: str


@dataclass
class ReportData:
    run_dir: Path
    task_name: str
    task_path: str
    problem: str
    direction: Direction
    overview: dict[str, Any]
    points: list[Point]
    champion: Trial | None
    lineage: list[Step]
    lessons: list[Lesson]
    knowledge_note: str
    reproduce: list[str]
    title: ChampionDecision | None = None  # the champion's mean ± stderr (None in a record without champions)
    crownings: list[Point] = field(default_factory=list)  # each crowning: x = the trial, score = its mean
    crowned_stderr: list[float] = field(default_factory=list)
    generated_at: datetime = field(default_factory=datetime.now)


def _line_changes(before: str, after: str) -> tuple[int, int]:
    added = removed = 0
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def lineage(trials: dict[int, Trial], champion: Trial | None) -> list[Step]:
    """The champion's ancestors from the seed down to it (first parents), each with its effect on the score."""
    chain: list[Trial] = []
    seen: set[int] = set()
    current = champion
    while current is not None and current.id not in seen:  # bounded: each trial once
        seen.add(current.id)
        chain.append(current)
        current = trials.get(current.parent_ids[0]) if current.parent_ids else None
    chain.reverse()
    steps = []
    for parent, trial in zip([None, *chain[:-1]], chain, strict=True):
        added, removed = _line_changes(parent.code if parent else "", trial.code or "")
        effect = None
        if parent is not None and parent.score is not None and trial.score is not None:
            effect = trial.score - parent.score
        stderr = trial.metrics.get("score_stderr")
        steps.append(Step(trial.id, trial.name or "", (trial.motivation or "")[:MOTIVATION_CHARS], trial.score,
                          effect, added, removed, stderr if isinstance(stderr, int | float) else None))
    return steps


def _points(trials: list[Trial]) -> list[Point]:
    stamps = [t.finished_at or t.created_at for t in trials if (t.finished_at or t.created_at) is not None]
    start = min(stamps) if stamps else None
    points = []
    for t in trials:
        if not t.status.finished:
            continue
        at = t.finished_at or t.created_at
        offset = (at - start).total_seconds() if at is not None and start is not None else 0.0
        points.append(Point(t.id, t.status.value, t.score if t.status is TrialStatus.SUCCEEDED else None, offset))
    return points


def _lessons(config: dict[str, Any], run_dir: Path, task_root: Path | None) -> tuple[list[Lesson], str]:
    """The knowledge base's best-supported lessons (this run's first), or none with the reason."""
    from evoforge.memory.cognition.store import CognitionBase

    settings = config.get("settings", {})
    kb = settings.get("kb") or (config.get("task_config", {}).get("knowledge", {}) or {}).get("kb")
    location = Path(kb) if kb else run_dir / "knowledge.db"
    if kb and not location.is_absolute() and task_root is not None and "://" not in str(kb):
        location = task_root / kb
    if "://" not in str(kb or "") and not location.exists():
        return [], f"no knowledge base at {location}"
    try:
        base = CognitionBase.open(str(kb) if kb and "://" in str(kb) else location)
    except Exception as exc:  # a report must not fail for the knowledge base: say why it is missing
        return [], f"the knowledge base at {location} could not be read: {exc}"
    try:
        items = base.list(kind="lesson")
    finally:
        base.close()
    label = str(run_dir)
    items.sort(key=lambda i: (i.provenance.get("run") != label, -(i.support - i.contradictions), i.id or 0))
    lessons = [
        Lesson(i.title, i.content, i.kind, i.support, i.contradictions,
               ", ".join(f"{k}: {v}" for k, v in sorted(i.provenance.items()) if k in ("run", "trial", "trials")))
        for i in items[:TOP_LESSONS]
    ]
    return lessons, "" if lessons else "the knowledge base holds no lessons yet"


def reproduce_commands(task_path: str, program: Path | None, repeats: int = 3) -> list[str]:
    """The shell command that evaluates the champion's program (saved at `program`) again with the task's
    evaluator, `repeats` times with different seeds."""
    if program is None:
        return []
    return [f"evoforge eval {shlex.quote(task_path)} {shlex.quote(str(program))} --repeats {repeats}"]


def collect(run_dir: Path, champion_file: Path | None = None) -> ReportData:
    """Everything the report shows, read from the record of `run_dir`; the reproduce command names
    `champion_file`, where the caller saves the champion's program."""
    overview = run_overview(run_dir)
    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        info = record.run_info()
        direction = run_direction(record)
        trials = record.trials()
        title = record.champion()
        champion = record.trial(title.trial_id) if title is not None else record.best(direction)
        decisions = [d for d in record.champion_decisions() if d.crowned]
    finally:
        record.close()
    task_path = str(info.config.get("task_path", ""))
    problem, task_root = "", None
    if task_path and Path(task_path).is_dir():
        task_root = Path(task_path)
        try:
            from evoforge.task.loader import load_task

            problem = load_task(task_root).problem_text
        except Exception as exc:  # the folder changed since the run: report that instead of failing
            problem = f"(the task at {task_path} no longer loads: {exc})"
    else:
        problem = f"(the task folder {task_path or '?'} is gone)"
    lessons, note = _lessons(info.config, run_dir, task_root)
    by_id = {t.id: t for t in trials}
    finished = _points(trials)
    start = min((p.at_s for p in finished), default=0.0)
    points = {p.trial_id: p for p in finished}
    crownings = [Point(d.trial_id, "crowned", d.mean, points[d.trial_id].at_s if d.trial_id in points else start)
                 for d in decisions]
    return ReportData(
        run_dir=run_dir, task_name=info.task_name, task_path=task_path, problem=problem, direction=direction,
        overview=overview, points=finished, champion=champion, lineage=lineage(by_id, champion),
        lessons=lessons, knowledge_note=note,
        reproduce=reproduce_commands(task_path, champion_file if champion is not None else None),
        title=title, crownings=crownings, crowned_stderr=[d.stderr or 0.0 for d in decisions],
    )
