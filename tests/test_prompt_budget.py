"""Prompt token budgets: estimates, the share of the context per section, and trimming whole items first."""

from __future__ import annotations

from pathlib import Path

from helpers import llm_task

from evoforge.config import LLMSettings, PromptBudget, ResearchSettings
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.research.budget import estimate_tokens, fit_items, plan_prompt, truncate_to_tokens
from evoforge.research.context import KnowledgeNote, ResearchContext
from evoforge.research.prompts import Prompts, template_values
from evoforge.task.loader import Task

PARENT = "def f(x):\n    return x * 2\n"


def task(budget: PromptBudget, max_tokens: int = 1000) -> Task:
    return llm_task(Path("."), "", problem_text="Double better.", seed_program=PARENT, name="b", problem="p.md",
                    llm=LLMSettings(max_tokens=max_tokens), research=ResearchSettings(prompt_budget=budget))


def ctx(parent_code: str = PARENT, n: int = 6, size: int = 2000) -> ResearchContext:
    parent = Trial(id=1, status=TrialStatus.SUCCEEDED, name="seed", code=parent_code, score=1.0)
    inspirations = tuple(Trial(id=10 + i, status=TrialStatus.SUCCEEDED, name=f"insp{i}",
                               code=f"# {i}\n" + "x = 1\n" * (size // 6), score=0.5) for i in range(n))
    knowledge = tuple(KnowledgeNote(id=i, kind="heuristic", title=f"note{i}", content="k" * 400) for i in range(n))
    failures = tuple(Trial(id=30 + i, status=TrialStatus.FAILED, name=f"fail{i}", error_class="crash",
                           error_message="e" * 250) for i in range(n))
    return ResearchContext(problem="Double better.", program_name="program.py", metric="score",
                           direction=Direction.MAXIMIZE, parent=parent, inspirations=inspirations,
                           knowledge=knowledge, failures=failures, recent=failures)


def test_token_estimate_and_visible_truncation() -> None:
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert truncate_to_tokens("short", 10) == "short"
    cut = truncate_to_tokens("y" * 1000, 50)
    assert estimate_tokens(cut) <= 50 and cut.endswith("(cut to fit the prompt budget)") and cut.startswith("yyy")


def test_sections_share_what_the_context_leaves() -> None:
    budget = PromptBudget(program=500, inspirations=4000, knowledge=1000, history=1000, context_tokens=10000)
    roomy = plan_prompt(budget, reply_tokens=1000, fixed_tokens=600, program_tokens=400)
    assert (roomy.inspirations, roomy.knowledge, roomy.history, roomy.program_note) == (4000, 1000, 1000, "")
    tight = plan_prompt(budget, reply_tokens=6000, fixed_tokens=600, program_tokens=400)  # 3000 left for 6000 asked
    assert (tight.inspirations, tight.knowledge, tight.history) == (2000, 500, 500)
    huge = plan_prompt(budget, reply_tokens=1000, fixed_tokens=600, program_tokens=9000)
    assert (huge.inspirations, huge.knowledge, huge.history) == (0, 0, 0)
    assert "about 9000 tokens" in huge.program_note and "shown whole" in huge.program_note


def test_whole_items_go_before_any_text_is_cut() -> None:
    def shrink(text: str, tokens: int) -> str:
        return truncate_to_tokens(text, tokens)

    items = ["a" * 400, "b" * 400, "c" * 400]  # 100 tokens each
    assert fit_items(items, estimate_tokens, 250, shrink) == (items[:2], 1)  # the third is dropped whole
    assert fit_items(items, estimate_tokens, 300, shrink) == (items, 0)
    kept, dropped = fit_items(items, estimate_tokens, 80, shrink)  # not even one fits: the first is cut
    assert dropped == 2 and len(kept) == 1 and kept[0].startswith("aaa") and estimate_tokens(kept[0]) <= 80
    assert fit_items(items, estimate_tokens, 20, shrink) == ([], 3)  # too little room to show anything useful
    assert fit_items(items, estimate_tokens, 80) == ([], 3)  # nothing to shrink with


def test_template_values_trim_sections_and_keep_the_program() -> None:
    small = PromptBudget(inspirations=1200, knowledge=300, history=200, context_tokens=32768)
    values = template_values(task(small), ctx())
    assert len(values["inspirations"]) == 2 and values["omitted"]["inspirations"] == 4  # ~510 tokens each
    assert len(values["knowledge"]) == 2 and values["omitted"]["knowledge"] == 4
    assert len(values["failures"]) == 2 and len(values["recent"]) == 4  # ~71 tokens a failure, ~12 a recent line
    assert values["parent"].code == PARENT and values["budget_note"] == ""
    user = Prompts().render("user.j2", values)
    assert "(4 more programs left out to fit the prompt.)" in user
    assert "(4 more knowledge items left out to fit the prompt.)" in user


def test_a_program_over_budget_is_kept_whole_and_the_prompt_says_so() -> None:
    big = "".join(f"v{i} = {i}\n" for i in range(3000))  # ~6,800 tokens
    budget = PromptBudget(program=2000, context_tokens=8000)
    system, user = (m["content"] for m in Prompts().messages(task(budget, max_tokens=1000), ctx(big)))
    assert big.rstrip() in user  # never cut
    assert "The current program is long" in user and "program budget is 2000" in user
    assert "# Other programs" not in user  # no room left for inspirations


def test_the_whole_prompt_fits_the_models_context() -> None:
    budget = PromptBudget(context_tokens=6000)
    system, user = (m["content"] for m in Prompts().messages(task(budget, max_tokens=2000), ctx(n=12, size=4000)))
    assert estimate_tokens(system + user) <= 6000 - 2000
    assert "insp0" in user  # the best inspiration still made it, whole
