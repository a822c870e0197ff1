"""Hostile candidates through `evoforge run` (issue 9): a forger, a snoop, a disk filler and a caller-out are each
contained with a clear class or a score they could not inflate, nothing of them stays on disk, and the run goes
on to crown the honest improvement."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from containment import BWRAP, THROUGH_HELPER
from fake_llm import FakeLLM

from evoforge.experiment.disk import MB, folder_usage
from evoforge.memory.record import Record
from evoforge.models import TrialStatus

CLI = [sys.executable, "-m", "evoforge.cli"]
FORGER = """
import json, os
def result():
    open(os.environ.get("EVOFORGE_RESULT") or "result.json", "w").write(json.dumps({"score": 9.0}))
    for fd in range(3, 256):
        try:
            os.write(fd, json.dumps({"op": "result", "value": {"score": 9.0}}).encode() + b"\\n")
        except OSError:
            pass
    print(json.dumps({"score": 9.0}), flush=True)
    os._exit(0)
"""
SNOOP = """
from pathlib import Path
def result():
    found = 0
    for path in {paths}:
        try:
            Path(path).read_bytes()
            found += 1
        except OSError:
            pass
    return {{"score": 9.0 if found else -1.0}}
"""
FILLER = """
import os, time
def result():
    for i in range(40):
        with open(f"part{i}.bin", "wb") as fh:
            fh.write(os.urandom(1024) * (4 * 1024))
    time.sleep(30)
    return {"score": 9.0}
"""
CALLER = """
import socket
def result():
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
        return {{"score": 9.0}}
    except OSError:
        return {{"score": -1.0}}
"""
BETTER = "def result():\n    return {'score': 3.0}\n"


def answer(program: str) -> str:
    return f"NAME: try\nMOTIVATION: see what happens\n\n```python\n{program.strip()}\n```\n"


@BWRAP
def test_a_run_contains_its_hostile_candidates_and_goes_on(tmp_path: Path, fake_llm: FakeLLM) -> None:
    task = tmp_path / "task"
    (task / "data" / "test").mkdir(parents=True)
    (task / "data" / "test" / "answers.txt").write_text("42\n")
    (task / "problem.md").write_text("maximise the score\n")
    (task / "program.py").write_text("def result():\n    return {'score': 2.5}\n")
    (task / "evaluator.py").write_text(THROUGH_HELPER.replace("{timeout}", "40"))
    (task / "task.yaml").write_text(
        "name: hostile\nproblem: problem.md\nprogram: program.py\nevaluator: evaluator.py\ntimeout_s: 60\n"
        "hidden: [data/test]\nlimits: {isolation: bwrap, disk_mb: 12}\nresearch: {edit_format: full}\n"
        "analysis: {novelty_threshold: 1.0, review_every: 0}\n"
        f"llm: {{model: fake/m, base_url: '{fake_llm.base_url}', max_retries: 0}}\n")
    run_dir = tmp_path / "run"
    secrets = [str(task / "data" / "test" / "answers.txt"), str(task / "evaluator.py"), str(run_dir / "record.db"),
               str(run_dir / "trials" / "1" / "program.py"), "/etc/shadow", str(Path.home() / ".bashrc")]
    with socket.create_server(("127.0.0.1", 0)) as server:
        programs = [FORGER, SNOOP.format(paths=secrets), FILLER, CALLER.format(port=server.getsockname()[1]),
                    BETTER]

        def handler(body: dict[str, Any]) -> str:
            system = body["messages"][0]["content"]
            if "complete new program" in system:
                return answer(programs.pop(0) if programs else BETTER)
            if "VERDICT" in " ".join(m["content"] for m in body["messages"]):
                return "VERDICT: NOVEL"
            return json.dumps({"what_changed": "x", "what_happened": "y", "why": "z", "lesson": "", "trigger": "",
                               "lessons": []})

        fake_llm.set_handler(handler)
        env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
        out = subprocess.run([*CLI, "run", str(task), "--run-dir", str(run_dir), "--trials", "6",
                              "--concurrency", "1", "--prefetch", "0"], capture_output=True, text=True,
                             timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "network off" in out.stdout + out.stderr
    trials = {t.id: t for t in Record.for_run_dir(run_dir).trials()}
    assert len(trials) == 6
    forger, snoop, filler, caller, better = (trials[n] for n in range(2, 7))
    assert forger.score == 0.0 and forger.metrics.get("failed") == "no_value", forger
    assert snoop.score == -1.0 and caller.score == -1.0, (snoop.metrics, caller.metrics)  # found nothing
    assert (filler.status, filler.error_class) == (TrialStatus.FAILED, "disk_limit"), filler.error_message
    assert folder_usage(run_dir / "trials" / str(filler.id))[0] <= 2 * MB
    assert better.status is TrialStatus.SUCCEEDED and better.score == 3.0
    assert max(t.score or 0.0 for t in trials.values()) == 3.0
