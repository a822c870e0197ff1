"""The LLM researcher against the fake server, plus answer parsing and SEARCH/REPLACE application."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply
from helpers import llm_task

from evoforge.config import LLMSettings, ResearchSettings
from evoforge.errors import TaskError
from evoforge.models import Direction, Proposal, Trial, TrialStatus
from evoforge.programs import unified_diff
from evoforge.research import (
    Edit,
    EditError,
    LLMProposer,
    OfflineProposer,
    ResearchContext,
    apply_edits,
    make_proposer,
)
from evoforge.research.parse import parse_answer
from evoforge.task.loader import Task

PARENT = '''"""Seed."""


def score(x):
    total = 0.0
    for i in range(10):
        total += x * 0.5
    return total


if __name__ == "__main__":
    print(score(1.0))
'''

GOOD = """NAME: bigger factor
MOTIVATION: a larger factor raises the total.

<<<<<<< SEARCH
        total += x * 0.5
=======
        total += x * 0.9
>>>>>>> REPLACE
"""

MISSING = GOOD.replace("total += x * 0.5\n=", "total += x * 0.55\n=")


def make_task(root: Path, fake: FakeLLM, *, edit_format: str = "diff", prompts: str | None = None) -> Task:
    return llm_task(root, fake.base_url, problem_text="Maximise the total.", seed_program=PARENT, name="demo",
                    research=ResearchSettings(edit_format=edit_format), prompts=prompts)


def context() -> ResearchContext:
    parent = Trial(
        id=7, status=TrialStatus.SUCCEEDED, name="seed", code=PARENT, score=5.0, metrics={"rmse": 0.25}
    )
    inspiration = Trial(
        id=3, status=TrialStatus.SUCCEEDED, name="other idea", code="print('inspired')\n", score=4.5
    )
    failure = Trial(
        id=4,
        status=TrialStatus.FAILED,
        name="crashy",
        error_class="crash:ValueError",
        error_message="bad shape",
    )
    return ResearchContext(
        problem="Maximise the total.",
        program_name="program.py",
        metric="score",
        direction=Direction.MAXIMIZE,
        parent=parent,
        inspirations=(inspiration,),
        failures=(failure,),
        recent=(failure,),
        parent_digest="stage full: score 5.0 in 0.1 s",
    )


def propose(task: Task, ctx: ResearchContext | None = None) -> Proposal:
    proposer = make_proposer(task, None)
    assert isinstance(proposer, LLMProposer)

    async def go() -> Proposal:
        try:
            return await proposer.propose(ctx or context())
        finally:
            await proposer.aclose()

    return asyncio.run(go())


def user_message(request: dict) -> str:
    return [m["content"] for m in request["messages"] if m["role"] == "user"][-1]


def test_edits_apply(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push(GOOD)
    proposal = propose(make_task(tmp_path, fake_llm))
    assert proposal.error is None
    assert proposal.code == PARENT.replace("x * 0.5", "x * 0.9")
    assert proposal.name == "bigger factor" and proposal.motivation == "a larger factor raises the total."
    assert proposal.proposer == "llm" and proposal.model == "fake-model"
    assert [c.role for c in proposal.llm_calls] == ["researcher"]
    system, user = (m["content"] for m in fake_llm.requests[0]["messages"])
    assert "<<<<<<< SEARCH" in system and "higher" in system
    for shown in (
        "Maximise the total.",
        "total += x * 0.5",
        "score = 5",
        "rmse = 0.25",
        "stage full: score 5.0",
        "other idea",
        "print('inspired')",
        "crashy: crash:ValueError: bad shape",
    ):
        assert shown in user


def test_repair_round_fixes_a_missing_search(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push(MISSING, GOOD.replace("NAME: bigger factor\n", ""))
    proposal = propose(make_task(tmp_path, fake_llm))
    assert proposal.error is None and "x * 0.9" in proposal.code
    assert proposal.name == "bigger factor"  # kept from the first answer when the repair gives none
    assert [c.role for c in proposal.llm_calls] == ["researcher", "repair"]
    assert len(fake_llm.requests) == 2
    repair_request = fake_llm.requests[1]["messages"]
    assert [m["role"] for m in repair_request] == ["system", "user", "assistant", "user"]
    assert repair_request[2]["content"] == MISSING
    error_text = user_message(fake_llm.requests[1])
    assert "matches nothing" in error_text and "total += x * 0.55" in error_text
    assert "7|         total += x * 0.5" in error_text  # the closest region, with its line number


def test_garbage_twice_is_an_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push("I would rather not.", "Still no code, sorry.")
    proposal = propose(make_task(tmp_path, fake_llm))
    assert proposal.error is not None and "after one repair round" in proposal.error
    assert "neither edits nor a program" in proposal.error
    assert proposal.code == ""
    assert [c.role for c in proposal.llm_calls] == ["researcher", "repair"]


def test_no_change_is_an_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    same = GOOD.replace("x * 0.9", "x * 0.5")
    fake_llm.push(same, same)
    proposal = propose(make_task(tmp_path, fake_llm))
    assert proposal.error is not None and "no change" in proposal.error and proposal.code == ""
    assert "no change" in user_message(fake_llm.requests[1])


def test_full_program_format(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push("**Name:** rewrite\n**Motivation:** simpler.\n\n```python\nprint(42)\n```\n")
    proposal = propose(make_task(tmp_path, fake_llm, edit_format="full"))
    assert proposal.error is None and proposal.code == "print(42)\n" and proposal.name == "rewrite"
    system = fake_llm.requests[0]["messages"][0]["content"]
    assert "complete new program" in system and "<<<<<<< SEARCH" not in system


def test_llm_failure_becomes_a_proposal_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push(Reply.error(503))
    proposal = propose(make_task(tmp_path, fake_llm))
    assert proposal.error is not None and "503" in proposal.error and proposal.code == ""
    assert len(proposal.llm_calls) == 1 and proposal.llm_calls[0].error


def test_template_override_from_task_folder(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "my_prompts").mkdir()
    (tmp_path / "my_prompts" / "user.j2").write_text(
        "CUSTOM {{ metric }} of {{ parent.name }}: {{ problem }}"
    )
    fake_llm.push(GOOD)
    proposal = propose(make_task(tmp_path, fake_llm, prompts="my_prompts"))
    assert proposal.error is None
    system, user = (m["content"] for m in fake_llm.requests[0]["messages"])
    assert user == "CUSTOM score of seed: Maximise the total.\n"
    assert "NAME:" in system  # templates the folder lacks stay built in


def test_bad_template_is_a_task_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "system.j2").write_text("{% if %}")
    with pytest.raises(TaskError, match="system.j2"):
        make_proposer(make_task(tmp_path, fake_llm, prompts="p"), None)
    with pytest.raises(TaskError, match="prompts"):
        make_proposer(make_task(tmp_path, fake_llm, prompts="absent"), None)


def test_make_proposer_choice(tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task(tmp_path, fake_llm)
    assert isinstance(make_proposer(task, "offline"), OfflineProposer)
    named = make_proposer(task, "other-model")
    assert isinstance(named, LLMProposer) and named.client.model == "other-model"
    monkeypatch.delenv("EVOFORGE_MODEL", raising=False)
    bare = Task(task.root, task.config.model_copy(update={"llm": LLMSettings()}), "p", PARENT)
    assert isinstance(make_proposer(bare, None), OfflineProposer)
    monkeypatch.setenv("EVOFORGE_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    from_env = make_proposer(bare, None)
    assert isinstance(from_env, LLMProposer) and from_env.client.model == "env-model"


# --- parsing ---


def test_parse_is_lenient() -> None:
    text = (
        "## **name**: Smarter loop\r\n**MOTIVATION:** first line\r\ncontinues here.\r\n\r\n"
        "<<<<<<< SEARCH   \r\n```python\r\n    total = 0.0   \r\n```\r\n=======\r\n```python\r\n"
        "    total = 1.0\r\n```\r\n>>>>>>> REPLACE  \r\n"
    )
    answer = parse_answer(text)
    assert answer.name == "Smarter loop"
    assert answer.motivation == "first line continues here."
    assert answer.edits == [Edit("    total = 0.0", "    total = 1.0")]
    assert apply_edits(PARENT, answer.edits) == PARENT.replace("total = 0.0", "total = 1.0")


def test_missing_name_is_derived_and_code_lines_are_not_fields(tmp_path: Path, fake_llm: FakeLLM) -> None:
    fake_llm.push("Motivation: use a dataclass for clarity\n\n```python\nname: str = 'x'\nprint(name)\n```\n")
    proposal = propose(make_task(tmp_path, fake_llm))
    assert proposal.name == "use a dataclass for clarity"
    assert proposal.code == "name: str = 'x'\nprint(name)\n"


def test_answer_wrapped_in_one_fence() -> None:
    answer = parse_answer("```\n" + GOOD + "```\n")
    assert answer.name == "bigger factor" and answer.motivation == "a larger factor raises the total."
    assert answer.edits == [Edit("        total += x * 0.5", "        total += x * 0.9")]


def test_unclosed_block_is_reported() -> None:
    answer = parse_answer("NAME: x\n<<<<<<< SEARCH\nfoo\n=======\nbar\n")
    assert answer.edits == [] and answer.code is None and "not closed" in answer.problems[0]


# --- edits ---


def test_whitespace_tolerant_matching() -> None:
    trailing = Edit("        total += x * 0.5   \n    return total", "        total += x\n    return total")
    assert "        total += x\n    return total" in apply_edits(PARENT, [trailing])
    dedented = Edit("for i in range(10):\n    total += x * 0.5", "for i in range(20):\n    total += x * 0.25")
    assert "    for i in range(20):\n        total += x * 0.25\n" in apply_edits(PARENT, [dedented])
    too_deep = Edit("            return total", "            total *= 2\n            return total")
    assert "        total *= 2\n    return total" not in apply_edits(PARENT, [too_deep])
    assert "    total *= 2\n    return total" in apply_edits(PARENT, [too_deep])
    padded = Edit("\n\ndef score(x):\n\n", "\n\ndef score(x, y=0):\n\n")
    assert apply_edits(PARENT, [padded]) == PARENT.replace("def score(x):", "def score(x, y=0):")


def test_edits_apply_in_order() -> None:
    edits = [Edit("total = 0.0", "total = 1.0"), Edit("total = 1.0", "total = 2.0")]
    assert "    total = 2.0\n" in apply_edits(PARENT, edits)


def test_ambiguous_search_is_an_error() -> None:
    twice = PARENT + "\n\ndef again(x):\n    total = 0.0\n    return total\n"
    with pytest.raises(EditError, match=r"edit 2 of 2: .*matches 2 places \(lines 5, 16\)"):
        apply_edits(twice, [Edit("print(score(1.0))", "print(score(2.0))"), Edit("total = 0.0", "total = 1")])
    with pytest.raises(EditError, match=r"matches 5 places \(lines 5, 7, 8, 16, 17\)"):
        apply_edits(twice, [Edit("total", "t")])  # as a substring, too


def test_partial_line_search_matches_as_substring() -> None:
    assert "        total += x * 0.75\n" in apply_edits(PARENT, [Edit("x * 0.5", "x * 0.75")])


def test_missing_search_names_block_and_closest_region() -> None:
    with pytest.raises(EditError) as info:
        apply_edits(PARENT, [Edit("for j in range(10):", "for j in range(5):")])
    assert "edit 1 of 1" in str(info.value) and "'for j in range(10):'" in str(info.value)
    assert info.value.closest == "6|     for i in range(10):"
    with pytest.raises(EditError, match="empty"):
        apply_edits(PARENT, [Edit("\n", "x")])


def test_unified_diff() -> None:
    diff = unified_diff(PARENT, PARENT.replace("0.5", "0.9"), "program.py")
    assert diff.startswith("--- a/program.py\n+++ b/program.py\n")
    assert "-        total += x * 0.5\n+        total += x * 0.9\n" in diff
    assert unified_diff("a", "b", "p").endswith("+b\n\\ No newline at end of file\n")
    assert unified_diff(PARENT, PARENT, "p") == ""
