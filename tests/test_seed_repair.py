"""A seed that fails: an LLM researcher is asked to repair it from its error (bounded attempts, each a trial); offline
the run stops at once with the seed's error class and first line. The researcher is the scripted fake server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_llm import FakeLLM
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.memory.record import Record
from evoforge.models import Trial, TrialStatus

BROKEN = "x = undefined_name + 1\n# knob\n"
REPAIR_HEADING = "# This program fails"


def broken_task(root: Path, base_url: str | None, extra_yaml: str = "") -> Path:
    llm = f"llm: {{base_url: '{base_url}', max_retries: 0}}\n" if base_url else ""
    task = make_task(root, extra_yaml=llm + extra_yaml)
    (task / "program.py").write_text(BROKEN)
    return task


def last_user(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def answer(search: str, replace: str) -> str:
    return (f"NAME: fix the name\nMOTIVATION: the program used a name it never defined\n"
            f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n")


def trials(run_dir: Path) -> list[Trial]:
    with Record.for_run_dir(run_dir) as record:
        return record.trials()


def test_an_llm_researcher_repairs_a_failing_seed_from_its_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    repairs: list[str] = []

    def handler(body: dict[str, Any]) -> str:
        if REPAIR_HEADING in last_user(body):
            repairs.append(last_user(body))
            return answer("x = undefined_name + 1", "x = 2.0")
        return answer("# knob", "# knob\nx = x + 0.5")

    fake_llm.set_handler(handler)
    task = broken_task(tmp_path / "task", fake_llm.base_url)
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=4, concurrency=1,
                                                                                  llm="fake-model"))
    assert summary.stop_reason == "reached 4 trials"
    seed, repaired, *rest = trials(tmp_path / "run")
    assert seed.status is TrialStatus.FAILED and seed.error_class == "crash:NameError"
    assert repaired.parent_ids == (seed.id,) and repaired.status is TrialStatus.SUCCEEDED
    assert repaired.score == pytest.approx(-1.0)  # x = 2: -(2 - 3)^2
    assert len(repairs) == 1 and "NameError: name 'undefined_name' is not defined" in repairs[0]
    assert all(t.parent_ids != (seed.id,) for t in rest)  # later trials build on the repaired program


def test_repairs_are_bounded_and_the_run_stops_with_the_seed_error(tmp_path: Path, fake_llm: FakeLLM) -> None:
    asked: list[str] = []

    def handler(body: dict[str, Any]) -> str:
        content = last_user(body)
        if REPAIR_HEADING not in content:
            return "NAME: n/a\nMOTIVATION: n/a\n"
        asked.append(content)
        broken_line = "x = undefined_name + 1" if "undefined_name + 1" in content else "x = still_undefined"
        return answer(broken_line, "x = still_undefined")

    fake_llm.set_handler(handler)
    task = broken_task(tmp_path / "task", fake_llm.base_url, "research: {seed_repairs: 2}\n")
    run_dir = tmp_path / "run"
    with pytest.raises(RunError) as failed:
        evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=10, concurrency=1, llm="fake-model"))
    assert str(failed.value).startswith(
        "the seed program failed: NameError: name 'undefined_name' is not defined (crash:NameError) "
        "(2 repair attempts by the researcher failed too)")
    seed, first, second = trials(run_dir)
    assert [t.status for t in (first, second)] == [TrialStatus.FAILED, TrialStatus.FAILED]
    assert first.parent_ids == (seed.id,) and second.parent_ids == (first.id,)  # each repairs the latest program
    assert "still_undefined" in asked[1]  # the second attempt was shown the first attempt's own error


def test_offline_stops_at_once_without_repair(tmp_path: Path) -> None:
    task = broken_task(tmp_path / "task", None)
    with pytest.raises(RunError, match=r"^the seed program failed: NameError: .* \(crash:NameError\); no trial"):
        evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=5, llm="offline"))
    assert len(trials(tmp_path / "run")) == 1
