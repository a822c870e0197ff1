"""Issue 4 end to end on the circle-packing example against the loopback fake LLM: the knowledge the researcher saw,
the analysis and the lessons are in `evoforge show`; a second run on the same base gets the first run's lesson in
its first prompt; the research agenda reaches the prompt; a repeated idea is rejected unevaluated; offline lessons."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path
from typing import Any

from fake_llm import FakeLLM
from typer.testing import CliRunner

import evoforge
from evoforge.cli import app
from evoforge.config import RunSettings
from evoforge.memory.cognition import CognitionBase
from evoforge.memory.record import Record
from evoforge.models import TrialStatus

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "circle_packing"
LESSON_A = ("Narrower wall margins let the packed circles grow",
            "In the circle packing, moving the outermost centres closer to the walls of the square enlarged the radii "
            "and raised the sum of radii.")
LESSON_B = ("The stagger constant barely moves the radius sum",
            "Changing ROW_STAGGER by a few hundredths changed the sum of radii by less than 0.01.")
AGENDA_DIRECTION = "shrink MARGIN_Y together with MARGIN_X"
MOTIVATION = "the seed leaves wide margins at the walls; moving the outer circles outwards frees room for larger radii"
_MARGIN = re.compile(r"^MARGIN_X = ([0-9.]+).*$", re.MULTILINE)

SEED_ANALYSIS = {
    "what_changed": "nothing: this is the task's seed program",
    "what_happened": "score 1.24 with the outermost centres 0.30 from the walls",
    "why": "Hypothesis: the wide margins between the outer circles and the walls keep the radii small",
    "lesson": "",
    "lessons": [],
}

runner = CliRunner()


def copy_task(tmp_path: Path, name: str, base_url: str | None, extra_yaml: str = "") -> Path:
    """The circle-packing example (knowledge folder included) in tmp_path, its LLM pointed at the fake."""
    task = tmp_path / name
    shutil.copytree(EXAMPLE, task, ignore=shutil.ignore_patterns("__pycache__"))
    with (task / "task.yaml").open("a", encoding="utf-8") as f:
        f.write(f"llm: {{base_url: '{base_url}', max_retries: 0}}\n" if base_url else "")
        f.write(extra_yaml)
    return task


def kind_of(body: dict[str, Any]) -> str:
    """Which role a request to the fake comes from, by its prompt."""
    messages = body["messages"]
    first = messages[0]["content"]
    if first.startswith("You are a research engineer"):
        return "researcher"
    if first.startswith("You are the Analyzer"):
        return "analyzer"
    if first.startswith("You review an automated research effort"):
        return "review"
    if first.startswith("An automated researcher proposed"):
        return "novelty"
    return "unknown"


class Lab:
    """Scripted answers per role: the researcher lowers MARGIN_X of the program it is shown a little more each time,
    always with the same motivation; the analyzer notes the seed's wide margins and writes one lesson for every
    other trial; the novelty judge says `verdict`; the review writes an agenda."""

    def __init__(self, lesson: tuple[str, str], verdict: str = "NOVEL") -> None:
        (self.title, self.content), self.verdict = lesson, verdict
        self.lock = threading.Lock()
        self.proposals = 0

    def __call__(self, body: dict[str, Any]) -> str:
        kind = kind_of(body)
        if kind == "researcher":
            with self.lock:
                self.proposals += 1
                step = 0.01 * self.proposals
            return self.researcher(body["messages"][1]["content"], step)
        if kind == "analyzer":
            seed = re.search(r'# The experiment: trial #\d+ "seed"', body["messages"][1]["content"])
            return json.dumps(SEED_ANALYSIS if seed else self.analysis())
        if kind == "novelty":
            return f"The candidate changes the same constant as before.\nVERDICT: {self.verdict}"
        if kind == "review":
            return f"## Directions\n- {AGENDA_DIRECTION}\n\n## Dead ends\n- widening the margins again\n"
        raise AssertionError(f"unexpected request: {body['messages'][0]['content'][:200]}")

    @staticmethod
    def researcher(user: str, step: float) -> str:
        program = user.split("# Current program", 1)[1]
        line = _MARGIN.search(program)
        assert line is not None, "the prompt shows no MARGIN_X line"
        new = f"MARGIN_X = {float(line.group(1)) - step:.2f}"
        return (f"NAME: narrower side margins\nMOTIVATION: {MOTIVATION}\n"
                f"<<<<<<< SEARCH\n{line.group(0)}\n=======\n{new}\n>>>>>>> REPLACE\n")

    def analysis(self) -> dict[str, Any]:
        return {
            "what_changed": "MARGIN_X was lowered by 0.02",
            "what_happened": "the sum of radii changed from the parent's value",
            "why": "hypothesis: circles next to the left and right walls had room to grow",
            "lesson": self.title,
            "trigger": "circles far from the walls; wide margins in the circle packing",
            "next_steps": ["lower MARGIN_Y as well"],
            "lessons": [{
                "title": self.title,
                "content": self.content,
                "trigger": "wide margins between the outer circles and the walls",
                "effect": "+1",
                "tags": ["margins"],
            }],
        }


def researcher_prompts(fake: FakeLLM) -> list[str]:
    return [r["messages"][1]["content"] for r in fake.requests if kind_of(r) == "researcher"]


def show_json(run_dir: Path, trial_id: int) -> dict[str, Any]:
    result = runner.invoke(app, ["show", str(run_dir), str(trial_id), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_knowledge_analysis_lessons_and_agenda_flow_across_two_runs(tmp_path: Path, fake_llm: FakeLLM) -> None:
    lab_a = Lab(LESSON_A)
    fake_llm.set_handler(lab_a)
    task_a = copy_task(tmp_path, "task_a", fake_llm.base_url, "analysis: {review_every: 2}\n")
    run_a = tmp_path / "run_a"
    settings = RunSettings(trials=4, concurrency=1, prefetch=0, llm="fake-model", seed=0)
    summary = evoforge.run(task_a, run_dir=run_a, settings=settings)
    assert summary.counts["succeeded"] == 4, summary.counts
    assert not fake_llm.handler_errors

    # `evoforge show` of a proposed trial: the knowledge its researcher saw, the analysis, the lessons written back
    shown = show_json(run_a, 2)
    titles = [k["title"] for k in shown["knowledge_shown"]]
    assert titles and len(titles) <= 5
    with CognitionBase.open(run_a / "knowledge.db", embeddings=False) as kb:
        seeded = {item.title for item in kb.list() if item.kind != "lesson"}
    assert set(titles) & seeded  # items from the task's knowledge/ folder reached the researcher
    first_prompts = researcher_prompts(fake_llm)[:2]  # trials 2 and 3 are proposed side by side
    assert any(all(title in prompt for title in titles) for prompt in first_prompts)  # recorded = shown
    kinds = [a["kind"] for a in shown["analyses"]]
    assert kinds.count("analysis") == 1 and kinds.count("lesson") == 1
    analysis = next(a["text"] for a in shown["analyses"] if a["kind"] == "analysis")
    assert "**Why (hypothesis):** hypothesis: circles next to the left" in analysis
    assert LESSON_A[0] in next(a["text"] for a in shown["analyses"] if a["kind"] == "lesson")
    text_view = runner.invoke(app, ["show", str(run_a), "2"])
    assert "knowledge the researcher saw" in text_view.output and "analysis: lesson" in text_view.output

    # the lesson is in run A's base once, with provenance and the support of every trial that taught it again
    with CognitionBase.open(run_a / "knowledge.db", embeddings=False) as kb:
        lessons = [i for i in kb.list(kind="lesson") if i.title == LESSON_A[0]]
    assert len(lessons) == 1
    assert lessons[0].support == 3 and lessons[0].effect_sign == 1  # taught by trials 2, 3 and 4, not the seed
    assert lessons[0].provenance["trial"] in (2, 3) and lessons[0].provenance["task"] == "circle_packing"
    assert lessons[0].provenance["run"] == str(run_a) and len(lessons[0].provenance["evidence"]) == 2

    # the agenda: written every 2 analysed trials, stored with its time, and shown to the next researcher
    with Record.for_run_dir(run_a) as record:
        agendas = record.agendas()
    assert len(agendas) == 2
    assert AGENDA_DIRECTION in agendas[0]["text"] and AGENDA_DIRECTION in agendas[1]["text"]
    kinds_in_order = [kind_of(r) for r in fake_llm.requests]
    first_review = kinds_in_order.index("review")
    after_review = [r["messages"][1]["content"] for i, r in enumerate(fake_llm.requests)
                    if i > first_review and kinds_in_order[i] == "researcher"]
    assert all(AGENDA_DIRECTION not in p for p in researcher_prompts(fake_llm)[:1])
    # (a proposal already under way while the review ran may not have it: two workers share the one slot)
    assert any("# Research agenda" in p and AGENDA_DIRECTION in p for p in after_review)

    # run B, another copy of the task pointed at run A's base with --kb, sees run A's lesson in its first prompt
    fake_llm.requests.clear()
    fake_llm.set_handler(Lab(LESSON_B))
    task_b = copy_task(tmp_path, "task_b", fake_llm.base_url)
    run_b = tmp_path / "run_b"
    result = runner.invoke(app, ["run", str(task_b), "--run-dir", str(run_b), "--trials", "2", "--concurrency", "1",
                                 "--llm", "fake-model", "--kb", str(run_a / "knowledge.db")])
    assert result.exit_code == 0, result.output
    assert not (run_b / "knowledge.db").exists()
    first_b = researcher_prompts(fake_llm)[0]
    assert LESSON_A[0] in first_b
    assert LESSON_A[0] in [k["title"] for k in show_json(run_b, 2)["knowledge_shown"]]


def test_a_repeated_idea_is_rejected_without_evaluation(tmp_path: Path, fake_llm: FakeLLM) -> None:
    lab = Lab(LESSON_A, verdict="DUPLICATE")
    fake_llm.set_handler(lab)
    # lexical similarity (no embeddings) keeps this test quick; the test above runs the hybrid default
    extra = "analysis: {review_every: 0}\nknowledge: {embeddings: false}\n"
    task = copy_task(tmp_path, "task", fake_llm.base_url, extra)
    run_dir = tmp_path / "run"
    settings = RunSettings(trials=4, concurrency=1, prefetch=0, llm="fake-model", seed=0)
    evoforge.run(task, run_dir=run_dir, settings=settings)
    assert not fake_llm.handler_errors

    with Record.for_run_dir(run_dir) as record:
        trials = record.trials()
        rejected = [t for t in trials if t.status is TrialStatus.REJECTED]
        assert rejected, [(t.id, t.status, t.error_class) for t in trials]
        trial = rejected[0]
        calls = [c.role for c in record.llm_calls(trial.id)]
        analyses = record.analyses(trial.id)
        # the rejected trial was never near a rejected one: its near-duplicate was evaluated
        near = int(re.search(r"trial #(\d+)", trial.error_message or "").group(1))  # type: ignore[union-attr]
        assert record.trial(near).status is TrialStatus.SUCCEEDED
    assert trial.error_class == "rejected:not_novel"
    assert "even after being shown it" in (trial.error_message or "")
    assert trial.seconds == 0 and trial.score is None
    assert not (run_dir / "trials" / str(trial.id)).exists()
    assert analyses == []
    assert calls.count("researcher") == 2 and calls.count("novelty") == 2
    asked_again = [p for p in researcher_prompts(fake_llm) if "too close to an experiment already run" in p]
    assert asked_again and MOTIVATION[:60] in asked_again[0]
    shown = show_json(run_dir, trial.id)
    assert shown["status"] == "rejected" and shown["error_class"] == "rejected:not_novel"


def test_offline_run_writes_templated_lessons_with_provenance(tmp_path: Path) -> None:
    task = copy_task(tmp_path, "task", None, "knowledge: {embeddings: false}\n")
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["run", str(task), "--run-dir", str(run_dir), "--llm", "offline", "--trials", "4",
                                 "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    listing = runner.invoke(app, ["knowledge", "list", "--kb", str(run_dir / "knowledge.db"), "--kind", "lesson",
                                  "--json"])
    assert listing.exit_code == 0, listing.output
    lessons = json.loads(listing.output)
    assert lessons
    for lesson in lessons:
        assert lesson["provenance"]["run"] == str(run_dir) and lesson["provenance"]["task"] == "circle_packing"
        assert lesson["source"].startswith(f"{run_dir} trial #")
    with Record.for_run_dir(run_dir) as record:
        taught = {a.data.get("item_id") for t in record.trials() for a in record.analyses(t.id) if a.kind == "lesson"}
    assert {lesson["id"] for lesson in lessons} <= taught
