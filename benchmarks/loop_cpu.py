"""The loop's own CPU per trial outside encoding: CPU of the evoforge process's main thread (the event loop: the
researcher's and the analyzer's calls, the record, prompt building, the sandbox broker) apart from the cognition
thread (MiniLM encoding, retrieval) and the progress display's, beside the whole process's, in the steady state
(from the first child's end to the last's). Default settings, instant fake LLM, trivial evaluator, concurrency 1.

    .venv/bin/python benchmarks/loop_cpu.py [--trials 80] [--lean]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import Answers, FakeLLM, make_task

CHILD = """import json, sys, time
from evoforge import loop
marks = []
finished = loop.Conductor._finished

def timed(self, trial_id):
    trial = finished(self, trial_id)
    marks.append((time.thread_time(), time.process_time()))  # called on the event loop's thread
    return trial

loop.Conductor._finished = timed
from evoforge.__main__ import main
status = main(sys.argv[1:])
print("MARKS " + json.dumps(marks))
sys.exit(status)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument("--lean", action="store_true", help="embeddings and the review off")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        fake.set_handler(Answers(0.0))
        task = make_task(tmp / "task", 0.0, fake.base_url, lean=args.lean)
        command = [sys.executable, "-c", CHILD, "run", str(task), "--run-dir", str(tmp / "run"), "--llm",
                   "fake-model", "--trials", str(args.trials + 1), "--concurrency", "1"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("MARKS ")]
        if done.returncode != 0 or not lines:
            sys.exit(f"evoforge exited {done.returncode}: {done.stderr[-2000:]}")
        marks = json.loads(lines[-1].removeprefix("MARKS "))[1:]  # from the first child's end
        n = len(marks) - 1
        loop_ms = 1000 * (marks[-1][0] - marks[0][0]) / n
        process_ms = 1000 * (marks[-1][1] - marks[0][1]) / n
        print(f"{'lean' if args.lean else 'default'} settings, {n} trials in the steady state: event loop thread "
              f"{loop_ms:.1f} ms CPU per trial, whole process {process_ms:.1f} ms")
        print(f"RESULT loop_cpu_ms_per_trial={loop_ms:.1f} process_cpu_ms_per_trial={process_ms:.1f}")


if __name__ == "__main__":
    main()
