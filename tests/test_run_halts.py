"""A run that cannot go on stops, resumably, with its reason recorded: an LLM endpoint that cannot be reached
(a closed port; the scripted fake server going down mid-run) stops it after a few calls in a row, instead of
failing every trial left; model errors (an HTTP answer) do not."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply
from taskfactory import make_task

import evoforge
from evoforge.config import RunSettings
from evoforge.errors import RunError
from evoforge.llm.ensemble import UNREACHABLE_AFTER
from evoforge.memory.record import Record
from evoforge.models import Trial
from evoforge.observer import Observer
from evoforge.views import run_overview


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _llm_task(root: Path, base_url: str) -> Path:
    return make_task(root, extra_yaml=f"llm: {{base_url: '{base_url}', max_retries: 0}}\n")


def _edit(body: dict) -> str:
    n = len(body["messages"][-1]["content"]) % 97
    return (f"NAME: nudge {n}\nMOTIVATION: moving x up by {n} hundredths may raise the score\n"
            f"<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = x + {n / 100}\n>>>>>>> REPLACE\n")


def _trials(run_dir: Path) -> list[Trial]:
    with Record.for_run_dir(run_dir) as record:
        return record.trials()


def test_a_closed_port_stops_the_run_after_a_few_calls(tmp_path: Path) -> None:
    task = _llm_task(tmp_path / "task", f"http://127.0.0.1:{_closed_port()}/v1")
    run_dir = tmp_path / "run"
    with pytest.raises(RunError, match=r"the LLM endpoint is unreachable \(\d+ calls in a row could not connect"):
        evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=30, concurrency=2, llm="fake-model"))
    trials = _trials(run_dir)
    assert [t.name for t in trials] == ["seed"] and trials[0].score is not None  # no trial burnt: proposals it
    # could not make are no trials
    overview = run_overview(run_dir)
    assert "unreachable" in overview["stopped_because"] and "evoforge resume" in overview["stopped_because"]
    with Record.for_run_dir(run_dir) as record:
        failed_calls = [c for c in record.llm_calls() if c.error]
    assert len(failed_calls) >= UNREACHABLE_AFTER and all("Connection" in c.error for c in failed_calls)


def test_the_fake_server_going_down_stops_the_run_and_resume_finishes_it(tmp_path: Path, fake_llm: FakeLLM) -> None:
    task = _llm_task(tmp_path / "task", fake_llm.base_url)
    fake_llm.set_handler(_edit)
    run_dir = tmp_path / "run"

    class ServerDiesAfter(Observer):
        finished = 0

        def trial_finished(self, trial: Trial, best: Trial | None, counts: dict[str, int]) -> None:
            self.finished += 1
            if self.finished == 3:  # the third trial to finish, whatever its id
                fake_llm.close()

    observer = ServerDiesAfter()
    try:
        summary = evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=12, concurrency=1, llm="fake-model"),
                               observer=observer)
    except RunError as exc:
        assert "the LLM endpoint is unreachable" in str(exc)
    else:  # what the run saw, for the next person (this failed once in a full suite and never alone)
        calls = [(c.role, c.error) for c in Record.for_run_dir(run_dir).llm_calls()]
        pytest.fail(f"the run did not stop: {summary.stop_reason}; {observer.finished} trials finished; "
                    f"{len(fake_llm.requests)} requests answered; calls {calls[-8:]}")
    trials = _trials(run_dir)
    assert 3 <= len(trials) < 12
    assert not [t.id for t in trials if "Connection" in (t.error_message or "")]  # none failed for want of a server
    assert "unreachable" in run_overview(run_dir)["stopped_because"]

    with FakeLLM() as again:  # the endpoint is back (elsewhere: the task names it)
        again.set_handler(_edit)
        _llm_task(tmp_path / "task", again.base_url)
        summary = evoforge.resume(run_dir)
    assert summary.stop_reason == "reached 12 trials"
    trials = _trials(run_dir)
    assert len(trials) == 12 and all(t.status.finished for t in trials)


def test_model_errors_do_not_stop_the_run(tmp_path: Path, fake_llm: FakeLLM) -> None:
    # no benching here (tests/test_providers.py tests it): with one model, the third failure in a row benched it for
    # 120 s, and whether the last proposals had picked it before that depended on the machine's load
    task = make_task(tmp_path / "task", extra_yaml=f"llm: {{base_url: '{fake_llm.base_url}', max_retries: 0, "
                                                    "bench_s: 0}\n")
    fake_llm.set_handler(lambda body: Reply.error(400, body='{"error": {"message": "bad request"}}'))
    summary = evoforge.run(task, run_dir=tmp_path / "run", settings=RunSettings(trials=6, concurrency=2,
                                                                                 llm="fake-model"))
    assert summary.stop_reason == "reached 6 trials"
    assert summary.counts["failed"] == 5  # every proposal failed on the model's answer, each one a trial


def test_a_failed_seed_is_named_with_its_error_and_the_run_folder(tmp_path: Path) -> None:
    task = make_task(tmp_path / "task")
    (task / "program.py").write_text("x = undefined_name + 1\n# knob\n")
    run_dir = tmp_path / "run"
    with pytest.raises(RunError) as failed:
        evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=5, llm="offline"))
    message = str(failed.value)
    assert message.startswith("the seed program failed: NameError: name 'undefined_name' is not defined "
                              "(crash:NameError)")
    assert f"`evoforge show {run_dir} 1`" in message and "RUN_DIR" not in message
    assert run_overview(run_dir)["stopped_because"] == message  # `evoforge status` says why the run stopped
