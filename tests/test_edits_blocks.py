"""EVOLVE-BLOCK enforcement, ambiguous and near-miss SEARCH blocks, the repair round's hint, and patch types."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
from fake_llm import FakeLLM
from helpers import llm_task

from evoforge.config import PatchWeights
from evoforge.models import Direction, Proposal, Trial, TrialStatus
from evoforge.research import Edit, EditError, LLMProposer, ResearchContext, apply_edits, make_proposer
from evoforge.research.edits import check_blocks, choose_patch_type, find_blocks
from evoforge.research.prompts import Prompts
from evoforge.task.loader import Task

BLOCKED = """import math

SCALE = 2.0


# EVOLVE-BLOCK-START
def step(x):
    y = x * SCALE
    return y
# EVOLVE-BLOCK-END


def main():
    y = 1.0
    return step(y)
"""


def test_an_edit_inside_the_block_applies() -> None:
    result = apply_edits(BLOCKED, [Edit("    y = x * SCALE", "    y = x * SCALE + math.pi")])
    assert result == BLOCKED.replace("y = x * SCALE", "y = x * SCALE + math.pi")


def test_an_edit_outside_the_block_is_rejected_naming_the_line() -> None:
    with pytest.raises(EditError) as info:
        apply_edits(BLOCKED, [Edit("SCALE = 2.0", "SCALE = 3.0")])
    message = str(info.value)
    assert "edit 1 of 1" in message and "line 3" in message and "outside the EVOLVE-BLOCK" in message
    assert "lines 7-9" in message  # where edits may go
    assert apply_edits(BLOCKED, [Edit("SCALE = 2.0", "SCALE = 3.0")], blocks=False).count("SCALE = 3.0") == 1


def test_a_search_matching_inside_and_outside_takes_the_inside_match() -> None:
    # "y = " starts line 8 (inside) and line 14 (outside, in main): only the block's line may change
    result = apply_edits(BLOCKED, [Edit("y = x", "y = -x")])
    assert "    y = -x * SCALE" in result and "    y = 1.0" in result
    twice = BLOCKED.replace("    return y\n# EVOLVE", "    y = x * SCALE\n    return y\n# EVOLVE")
    with pytest.raises(EditError, match=r"matches 2 places \(lines 8, 9\)"):
        apply_edits(twice, [Edit("    y = x * SCALE", "    y = 0")])


def test_an_edit_that_spills_out_or_moves_a_marker_is_rejected() -> None:
    with pytest.raises(EditError, match=r"lines 9-10, which reach outside the EVOLVE-BLOCK regions"):
        apply_edits(BLOCKED, [Edit("    return y\n# EVOLVE-BLOCK-END", "    return y")])
    with pytest.raises(EditError, match=r"lines 6-7, which reach outside"):
        apply_edits(BLOCKED, [Edit("# EVOLVE-BLOCK-START\ndef step(x):", "def step(x):")])
    split = "    y = x * SCALE\n# EVOLVE-BLOCK-END\n# EVOLVE-BLOCK-START"
    with pytest.raises(EditError, match="marker lines"):
        apply_edits(BLOCKED, [Edit("    y = x * SCALE", split)])
    early_end = "    y = x * SCALE\n# EVOLVE-BLOCK-END\nprint(1)"
    with pytest.raises(EditError, match=r"line 11 \(a blank line\) is outside"):
        apply_edits(BLOCKED, [Edit("    y = x * SCALE", early_end)])


def test_a_full_rewrite_touching_outside_the_block_is_rejected() -> None:
    inside_only = BLOCKED.replace("    return y\n", "    return y + 1\n")
    check_blocks(BLOCKED, inside_only)
    check_blocks(BLOCKED, inside_only.rstrip("\n"))  # a trailing newline more or less is no change
    with pytest.raises(EditError, match=r"line 14 \('y = 1.0'\) is outside the EVOLVE-BLOCK regions"):
        check_blocks(BLOCKED, BLOCKED.replace("    y = 1.0", "    y = 5.0"))
    with pytest.raises(EditError, match="line 1 .*import math"):
        check_blocks(BLOCKED, "import numpy\n" + BLOCKED.split("\n", 1)[1])
    with pytest.raises(EditError, match="text after line 15"):
        check_blocks(BLOCKED, BLOCKED + "\nprint('extra')\n")
    with pytest.raises(EditError, match="marker lines"):
        check_blocks(BLOCKED, "def step(x):\n    return x\n")
    check_blocks("print(1)\n", "print(2)\n")  # no markers: anything goes


def test_markers_follow_the_languages_comment_syntax() -> None:
    js = "const a = 1;\n// EVOLVE-BLOCK-START\nfunction f() { return a; }\n// EVOLVE-BLOCK-END\n"
    assert find_blocks(js.split("\n"), "prog.js") == [(1, 3)]
    assert find_blocks(js.split("\n"), "prog.py") == []  # `//` is no comment in Python
    assert find_blocks(js.replace("//", "--").split("\n"), "query.sql") == [(1, 3)]
    with pytest.raises(EditError, match="line 1"):
        apply_edits(js, [Edit("const a = 1;", "const a = 2;")], filename="prog.js")
    assert "const a = 2;" in apply_edits(js, [Edit("const a = 1;", "const a = 2;")], filename="prog.py")
    unclosed = "x = 1\n# EVOLVE-BLOCK-START\ny = 2\n"
    assert "y = 3" in apply_edits(unclosed, [Edit("y = 2", "y = 3")])  # an unclosed block runs to the end
    with pytest.raises(EditError, match="outside"):
        apply_edits(unclosed, [Edit("x = 1", "x = 0")])


def test_ambiguous_search_is_an_error_not_a_guess() -> None:
    code = "def f():\n    return 1\n\n\ndef g():\n    return 1\n"
    with pytest.raises(EditError, match=r"matches 2 places \(lines 2, 6\).*more surrounding lines"):
        apply_edits(code, [Edit("    return 1", "    return 2")])
    assert apply_edits(code, [Edit("def g():\n    return 1", "def g():\n    return 2")]).endswith("return 2\n")


def test_a_near_miss_names_the_closest_region() -> None:
    with pytest.raises(EditError) as info:
        apply_edits(BLOCKED, [Edit("def step(x):\n    y = x * SCALLE\n    return y", "pass")])
    assert info.value.closest == "7| def step(x):\n8|     y = x * SCALE\n9|     return y"
    assert "matches nothing" in str(info.value) and info.value.closest in str(info.value)


def make_task(root: Path, fake: FakeLLM) -> Task:
    return llm_task(root, fake.base_url, problem_text="Make step bigger.", seed_program=BLOCKED, name="demo")


def context(code: str = BLOCKED) -> ResearchContext:
    parent = Trial(id=1, status=TrialStatus.SUCCEEDED, name="seed", code=code, score=2.0)
    other = Trial(id=2, status=TrialStatus.SUCCEEDED, name="other", code="print('other')\n", score=1.0)
    return ResearchContext(problem="Make step bigger.", program_name="program.py", metric="score",
                           direction=Direction.MAXIMIZE, parent=parent, inspirations=(other,))


def test_the_repair_round_shows_the_closest_region(tmp_path: Path, fake_llm: FakeLLM) -> None:
    near_miss = "NAME: n\nMOTIVATION: m\n<<<<<<< SEARCH\n    y = x * SCALLE\n=======\n    y = x * 3\n>>>>>>> REPLACE\n"
    outside = "NAME: n\nMOTIVATION: m\n<<<<<<< SEARCH\nSCALE = 2.0\n=======\nSCALE = 9.0\n>>>>>>> REPLACE\n"
    fake_llm.push(near_miss, outside)
    task = make_task(tmp_path, fake_llm)
    proposer = make_proposer(task, None)
    assert isinstance(proposer, LLMProposer)

    async def go() -> Proposal:
        try:
            return await proposer.propose(context())
        finally:
            await proposer.aclose()

    proposal = asyncio.run(go())
    system = fake_llm.requests[0]["messages"][0]["content"]
    assert "EVOLVE-BLOCK-START and EVOLVE-BLOCK-END" in system
    repair = fake_llm.requests[1]["messages"][-1]["content"]
    assert "8|     y = x * SCALE" in repair and "without the line numbers" in repair
    assert proposal.error is not None and "line 3" in proposal.error and "outside the EVOLVE-BLOCK" in proposal.error
    hint = Prompts().repair(task, context(), "edit 1 of 1: no match", closest=" 8|     y = x * SCALE")
    assert "closest to your SEARCH section" in hint and " 8|     y = x * SCALE" in hint


def test_patch_types_are_drawn_by_weight_and_seeded() -> None:
    weights = PatchWeights(diff=3.0, full=1.0, crossover=0.0)
    rng = random.Random(0)
    counts = Counter(choose_patch_type(weights, rng) for _ in range(800))
    assert set(counts) == {"diff", "full"} and 2.2 < counts["diff"] / counts["full"] < 4.0
    only_cross = PatchWeights(diff=0.0, crossover=1.0)
    assert choose_patch_type(only_cross, random.Random(1)) == "crossover"
    assert choose_patch_type(only_cross, random.Random(1), can_crossover=False) == "diff"
    draws = [[choose_patch_type(PatchWeights(full=1.0, crossover=1.0), random.Random(7)) for _ in range(5)]
             for _ in range(2)]
    assert draws[0] == draws[1]
    with pytest.raises(ValueError, match="patch_types"):
        PatchWeights(diff=0.0)


def test_patch_type_templates(tmp_path: Path, fake_llm: FakeLLM) -> None:
    task, prompts = make_task(tmp_path, fake_llm), Prompts()
    system, user = (m["content"] for m in prompts.messages(task, context(), patch_type="crossover"))
    assert "combines the best ideas" in system and "<<<<<<< SEARCH" not in system
    assert "# Second parent: other (score = 1)" in user and "print('other')" in user
    assert "combines the current program and the second parent" in user
    alone = context()
    alone = ResearchContext(**{**alone.__dict__, "inspirations": ()})
    system, user = (m["content"] for m in prompts.messages(task, alone, patch_type="crossover"))
    assert "Second parent" not in user and "complete rewritten program" in user  # nothing to cross: a rewrite
    system, _ = (m["content"] for m in prompts.messages(task, context(), patch_type="diff"))
    assert "<<<<<<< SEARCH" in system
    with pytest.raises(ValueError, match="patch type"):
        prompts.messages(task, context(), patch_type="merge")
