"""The Analyzer: offline templated lessons, the LLM analysis with its repair round (fake server), log condensing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply
from helpers import llm_task

from evoforge.analysis import (
    Analysis,
    AnalysisInput,
    Analyzer,
    LLMAnalyzer,
    OfflineAnalyzer,
    condense_log,
    digest_outcome,
    make_analyzer,
    summarize_curves,
)
from evoforge.analysis._base import ANALYSIS_KEYS
from evoforge.analysis.lessons import constant_changes
from evoforge.analysis.schema import SchemaError, parse_analysis
from evoforge.config import LLMSettings
from evoforge.models import Direction, GateDecision, Outcome, StageResult, Trial, TrialStatus
from evoforge.task.loader import Task

PARENT = "MARGIN_X = 0.30\nN = 10\n\n\ndef run():\n    return MARGIN_X * N\n"
CHILD = PARENT.replace("MARGIN_X = 0.30", "MARGIN_X = 0.34")

GOOD = {
    "what_changed": "MARGIN_X raised from 0.30 to 0.34",
    "what_happened": "score rose from 1.234 to 1.255 (+0.021)",
    "why": "Hypothesis: a wider margin avoids overlaps at the border",
    "lesson": "Wider margins help when circles crowd the border",
    "trigger": "score plateaus while circles touch the border",
    "next_steps": ["try MARGIN_X = 0.36"],
    "lessons": [
        {"title": "wider margin helps", "content": "0.30→0.34 gave +0.021", "trigger": "crowded border",
         "effect": "helped", "tags": ["margin"]},
        {"title": "N matters less", "content": "unchanged", "trigger": "tuning N", "effect": 0},
    ],
}


def trial(tid: int, code: str, score: float | None, status: TrialStatus = TrialStatus.SUCCEEDED, **kw: object) -> Trial:
    return Trial(id=tid, status=status, code=code, score=score, parent_ids=(1,) if tid != 1 else (), **kw)


def make_input(
    child_score: float | None = 1.255,
    *,
    parent_score: float = 1.234,
    outcome: Outcome | None = None,
    direction: Direction = Direction.MAXIMIZE,
    code: str = CHILD,
    log: str = "",
    curves: dict[str, list[tuple[int, float]]] | None = None,
) -> AnalysisInput:
    parent = trial(1, PARENT, parent_score, name="seed", seconds=1.0)
    outcome = outcome or Outcome(status=TrialStatus.SUCCEEDED, score=child_score, seconds=1.1)
    child = trial(2, code, None, status=TrialStatus.RUNNING, name="wider margin", motivation="more room")
    sibling = trial(3, PARENT.replace("N = 10", "N = 11"), 1.24, name="one more circle")
    digest = digest_outcome(outcome, parent=parent, best=parent, direction=direction, metric="score")
    return AnalysisInput(
        trial=child, outcome=outcome, digest=digest, parent=parent, siblings=[sibling], curves=curves or {},
        log_tail=log, metric="score", direction=direction, problem="Pack circles in a unit square.",
    )


def analyze(analyzer: Analyzer, inp: AnalysisInput) -> Analysis:
    async def go() -> Analysis:
        try:
            return await analyzer.analyze(inp)
        finally:
            await analyzer.aclose()

    return asyncio.run(go())


def make_task(root: Path, fake: FakeLLM, prompts: str | None = None) -> Task:
    return llm_task(root, fake.base_url, problem_text="Pack circles.", seed_program=PARENT, name="demo",
                    prompts=prompts)


def llm_analyzer(tmp_path: Path, fake: FakeLLM, prompts: str | None = None) -> LLMAnalyzer:
    analyzer = make_analyzer(make_task(tmp_path, fake, prompts), None)
    assert isinstance(analyzer, LLMAnalyzer)
    return analyzer


def last_user(request: dict) -> str:
    return [m["content"] for m in request["messages"] if m["role"] == "user"][-1]


# ---- offline ------------------------------------------------------------------------------------------------
def test_offline_lesson_names_the_constant_and_the_measured_effect() -> None:
    result = analyze(OfflineAnalyzer(), make_input())
    assert result.source == "offline" and set(result.data) == set(ANALYSIS_KEYS)
    (lesson,) = result.lessons
    assert lesson.title == "raising MARGIN_X 0.30→0.34 improved score by +0.021 (+1.7%)"
    assert lesson.effect_sign == 1 and lesson.kind == "lesson"
    assert "plateaus near 1.234" in lesson.trigger and "MARGIN_X = 0.30" in lesson.trigger
    assert "1.234 → 1.255" in lesson.content and "MARGIN_X" in lesson.tags
    assert "raising MARGIN_X" in result.text and "score = 1.255" in result.text
    assert result.data["next_steps"] and "same direction" in result.data["next_steps"][0]


def test_offline_lesson_on_a_worse_score_when_minimizing() -> None:
    result = analyze(OfflineAnalyzer(), make_input(1.3, parent_score=1.0, direction=Direction.MINIMIZE))
    (lesson,) = result.lessons
    assert lesson.effect_sign == -1 and "worsened score by +0.3 (+30%)" in lesson.title
    assert lesson.trigger.startswith("about to change MARGIN_X = 0.30")


def test_no_lesson_on_an_equal_score() -> None:
    result = analyze(OfflineAnalyzer(), make_input(1.234))
    assert result.lessons == () and result.data["lesson"] == "" and result.text.startswith("score = 1.234")


def test_failure_gives_a_pitfall_with_the_error() -> None:
    outcome = Outcome(
        status=TrialStatus.FAILED, error_class="crash:ZeroDivisionError",
        error_message="Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero",
    )
    (lesson,) = analyze(OfflineAnalyzer(), make_input(outcome=outcome)).lessons
    assert lesson.kind == "pitfall" and lesson.effect_sign == -1
    assert lesson.title == "raising MARGIN_X 0.30→0.34 led to crash:ZeroDivisionError"
    assert lesson.trigger == "crash:ZeroDivisionError: ZeroDivisionError: division by zero"
    assert "parent #1 ran fine" in lesson.content


def test_pruned_trial_and_seed() -> None:
    pruned = Outcome(status=TrialStatus.PRUNED, score=0.9, error_class="pruned:median")
    (lesson,) = analyze(OfflineAnalyzer(), make_input(outcome=pruned)).lessons
    assert lesson.kind == "lesson" and lesson.effect_sign == -1
    assert lesson.title == "raising MARGIN_X 0.30→0.34 was stopped early (pruned:median)"
    seed = replace(make_input(), parent=None)
    assert analyze(OfflineAnalyzer(), seed).lessons == ()  # nothing to compare with


def test_structural_change_is_named_by_the_trial() -> None:
    code = PARENT.replace("return MARGIN_X * N", "return MARGIN_X * N * N")
    (lesson,) = analyze(OfflineAnalyzer(), make_input(1.5, code=code)).lessons
    assert lesson.title.startswith("the change 'wider margin' improved score") and "structural" in lesson.tags
    assert "more room" in lesson.content


def test_constant_changes_match_named_constants_when_counts_differ() -> None:
    child = CHILD + "\nEXTRA = 2.5\n"
    (change,) = constant_changes(PARENT, child)
    assert (change.label, change.old_text, change.new_text) == ("MARGIN_X", "0.30", "0.34")
    assert constant_changes(PARENT, "def (:\n") == []


# ---- LLM ----------------------------------------------------------------------------------------------------
def test_valid_analysis(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push("```json\n" + json.dumps(GOOD) + "\n```")
    log = "epoch 1\nValueError: shapes differ\n" + "step\n" * 3
    outcome = Outcome(
        status=TrialStatus.SUCCEEDED, score=1.255, metrics={"overlap": 0.0}, seconds=1.1,
        stages=(StageResult("smoke", TrialStatus.SUCCEEDED, score=1.1, seconds=0.25),),
        decisions=(GateDecision("stage", "smoke", "promote", "1.1 ≥ threshold 1.0"),),
    )
    inp = make_input(outcome=outcome, log=log, curves={"loss": [(i, 1.0 / (i + 1)) for i in range(20)]})
    result = analyze(llm_analyzer(tmp_path, fake_llm), inp)
    assert result.source == "llm" and len(result.llm_calls) == 1 and result.llm_calls[0].role == "analyzer"
    assert [lesson.title for lesson in result.lessons] == ["wider margin helps", "N matters less"]
    assert [lesson.effect_sign for lesson in result.lessons] == [1, 0] and result.lessons[0].tags == ("margin",)
    assert "**Why (hypothesis):** Hypothesis: a wider" in result.text and "- try MARGIN_X = 0.36" in result.text
    assert result.data["what_happened"] == GOOD["what_happened"]
    prompt = last_user(fake_llm.requests[0])
    for part in ("-MARGIN_X = 0.30", "+MARGIN_X = 0.34", "score = 1.255", "ValueError: shapes differ",
                 "loss: 20 points", "one more circle", "overlap = 0",
                 "smoke succeeded (1.1, 0.25 s)", "stage promote: 1.1 ≥ threshold 1.0",
                 "Pack circles in a unit square", "Parent: trial #1"):
        assert part in prompt, part


def test_malformed_then_repaired(tmp_path: Path, fake_llm: FakeLLM) -> None:
    broken = dict(GOOD)
    del broken["why"]
    fake_llm.push(json.dumps(broken), json.dumps(GOOD))
    result = analyze(llm_analyzer(tmp_path, fake_llm), make_input())
    assert result.source == "llm" and [c.role for c in result.llm_calls] == ["analyzer", "analyzer_repair"]
    assert len(fake_llm.requests) == 2
    repair = fake_llm.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and "- why: Field required" in repair[-1]["content"]


def test_malformed_twice_leaves_the_digest(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push("I think it went well.", '{"what_changed": "x"')
    inp = make_input()
    result = analyze(llm_analyzer(tmp_path, fake_llm), inp)
    assert result.source == "digest" and result.text == inp.digest.text and result.lessons == ()
    assert len(result.llm_calls) == 2 and "no JSON object" in last_user(fake_llm.requests[1])
    assert "repair" in result.data["error"] and "not valid" in result.data["error"]


def test_llm_error_leaves_the_digest(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push(Reply.error(503))
    inp = make_input()
    result = analyze(llm_analyzer(tmp_path, fake_llm), inp)
    assert result.source == "digest" and result.text == inp.digest.text and result.lessons == ()
    assert len(result.llm_calls) == 1 and result.llm_calls[0].error and "503" in result.data["error"]


def test_headline_lesson_takes_its_sign_from_the_digest(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push(json.dumps({**GOOD, "lessons": []}))
    (lesson,) = analyze(llm_analyzer(tmp_path, fake_llm), make_input()).lessons
    assert lesson.title == GOOD["lesson"] and lesson.trigger == GOOD["trigger"] and lesson.effect_sign == 1


def test_schema_limits_lessons_to_three() -> None:
    with pytest.raises(SchemaError, match="lessons"):
        parse_analysis(json.dumps({**GOOD, "lessons": GOOD["lessons"] * 2}))
    with pytest.raises(SchemaError, match="object"):
        parse_analysis("[1, 2]")
    assert parse_analysis("Here: " + json.dumps({**GOOD, "next_steps": "one"}) + " done").next_steps == ["one"]


def test_task_template_overrides_the_analysis_prompt(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "analysis.j2").write_text("CUSTOM {{ metric }} #{{ trial.id }}")
    fake_llm.push(json.dumps(GOOD))
    analyze(llm_analyzer(tmp_path, fake_llm, prompts="p"), make_input())
    assert last_user(fake_llm.requests[0]) == "CUSTOM score #2\n"


def test_make_analyzer_choice(tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVOFORGE_MODEL", raising=False)
    task = make_task(tmp_path, fake_llm)
    assert isinstance(make_analyzer(task, "offline"), OfflineAnalyzer)
    no_model_llm = LLMSettings(base_url=fake_llm.base_url)
    no_model = Task(tmp_path, task.config.model_copy(update={"llm": no_model_llm}), "p", PARENT)
    assert isinstance(make_analyzer(no_model, None), OfflineAnalyzer)
    named = make_analyzer(no_model, "other-model")
    assert isinstance(named, LLMAnalyzer) and named.client.model == "other-model"


def test_task_config_imports_first_without_a_cycle() -> None:
    code = "import evoforge.config as c; print(c.TaskConfig.model_fields['analysis'].default.review_every)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"


# ---- condensing ---------------------------------------------------------------------------------------------
def test_condense_keeps_head_tail_and_errors_under_budget() -> None:
    lines = [f"step {i} loss {1 / (i + 1):.5f}" for i in range(60_000)]
    lines[30_000] = "RuntimeError: CUDA out of memory at step 30000"
    lines[45_000] = "WARNING: loss is nan"
    text = "\n".join(lines)
    assert len(text) > 1_000_000
    out = condense_log(text, 6000)
    assert len(out) <= 6000
    assert out.startswith("step 0 loss") and out.endswith("step 59999 loss 0.00002")
    assert "[line 30001] RuntimeError: CUDA out of memory" in out and "[line 45001] WARNING: loss is nan" in out
    assert "lines omitted" in out and out.index("RuntimeError") < out.index("WARNING")
    assert condense_log("short log", 6000) == "short log"


def test_condense_one_huge_line_and_many_errors() -> None:
    assert len(condense_log("x" * 1_000_000, 2000)) <= 2000
    text = "\n".join(f"Error {i}: failed {'y' * (i % 7)}" for i in range(20_000))
    out = condense_log(text, 3000)
    assert len(out) <= 3000 and "Error 0:" in out and "Error 19999:" in out


def test_curve_summary() -> None:
    curves = {"loss": [(i, 1.0 if i > 10 else 2.0 - i / 10) for i in range(50)] + [(50, float("nan"))]}
    summary = summarize_curves(curves)
    assert summary.startswith("loss: 51 points, steps 0→49; first 2, last 1")
    assert "min 1 @ step 10" in summary and "flat" in summary and "1 non-finite" in summary
    assert summarize_curves({}) == "" and "rising" in summarize_curves({"acc": [(i, i) for i in range(10)]})


def test_offline_lesson_skips_floating_point_noise() -> None:
    from evoforge.analysis.lessons import offline_lesson
    from evoforge.models import Direction, Trial, TrialStatus

    parent = Trial(id=1, status=TrialStatus.SUCCEEDED, score=1.5, code="A = 0.30\n")
    noisy = Trial(id=2, status=TrialStatus.SUCCEEDED, score=1.5 + 2e-16, code="A = 0.31\n", parent_ids=(1,))
    real = Trial(id=3, status=TrialStatus.SUCCEEDED, score=1.6, code="A = 0.31\n", parent_ids=(1,))
    assert offline_lesson(noisy, parent, "score", Direction.MAXIMIZE) is None
    lesson = offline_lesson(real, parent, "score", Direction.MAXIMIZE)
    assert lesson is not None and lesson.effect_sign == 1 and "A" in lesson.title
