"""The loop's own CPU per trial outside encoding: CPU of the evoforge process's main thread (the event loop: the
researcher's and the analyzer's calls, the record, prompt building, the sandbox broker) apart from the cognition
thread (MiniLM encoding, retrieval) and the progress display's, beside the whole process's, in the steady state
(from the first child's end to the last's). Default settings, instant fake LLM, trivial evaluator, concurrency 1.

    .venv/bin/python benchmarks/loop_cpu.py [--trials 80] [--lean] [--in-record 0]

`--in-record N` first fills the record with N finished trials (then resumes the run): how the cost grows with it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import Answers, FakeLLM, make_task, prefill

CHILD = """import json, sys, threading, time
from evoforge import loop
marks = []
threads = []  # CPU seconds by thread name at the first and the latest mark
finished = loop.Conductor._finished

def by_thread():
    cpu = {}
    for thread in threading.enumerate():
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, TypeError):  # ended meanwhile
            continue
        name = thread.name.rstrip("0123456789").rstrip("_-") or "?"
        cpu[name] = cpu.get(name, 0.0) + seconds
    return cpu

def timed(self, trial_id):
    trial = finished(self, trial_id)
    marks.append((time.thread_time(), time.process_time()))  # called on the event loop's thread
    if len(marks) <= 2:
        threads[:] = [by_thread()]
    elif len(threads) == 1:
        threads.append(by_thread())
    else:
        threads[1] = by_thread()
    return trial

loop.Conductor._finished = timed
from evoforge.__main__ import main
status = main(sys.argv[1:])
print("MARKS " + json.dumps(marks))
print("THREADS " + json.dumps(threads))
import resource
children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the sandboxes and evaluations, the whole run
print("CHILDREN " + json.dumps([children.ru_utime, children.ru_stime]))
sys.exit(status)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=80)
    parser.add_argument("--lean", action="store_true", help="embeddings and the review off")
    parser.add_argument("--in-record", type=int, default=0, help="fill the record with this many trials first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        fake.set_handler(Answers(0.0))
        task = make_task(tmp / "task", 0.0, fake.base_url, lean=args.lean)
        command = [sys.executable, "-c", CHILD, "run", str(task), "--run-dir", str(tmp / "run"), "--llm",
                   "fake-model", "--trials", str(args.trials + 1), "--concurrency", "1"]
        if args.in_record:
            subprocess.run([*command[:-4], "--trials", "1", "--concurrency", "1"], capture_output=True, check=True)
            prefill(tmp / "run", args.in_record)
            command = [sys.executable, "-c", CHILD, "resume", str(tmp / "run"), "--trials",
                       str(args.trials + 2 + args.in_record)]
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
        threads = [line for line in done.stdout.splitlines() if line.startswith("THREADS ")]
        first, last = json.loads(threads[-1].removeprefix("THREADS "))
        shares = {name: 1000 * (last[name] - first.get(name, 0.0)) / (n - 1) for name in last}
        shares["(threads not made by Python)"] = process_ms - sum(shares.values())
        print("by thread, ms CPU per trial: " + ", ".join(f"{name} {ms:.1f}" for name, ms in
                                                          sorted(shares.items(), key=lambda kv: -kv[1])))
        user, system = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("CHILDREN "))[9:])
        children_ms = 1000 * (user + system) / (args.trials + 1)
        print(f"child processes (sandboxes, evaluations; the whole run): {children_ms:.1f} ms CPU per trial "
              f"(user {1000 * user / (args.trials + 1):.1f}, system {1000 * system / (args.trials + 1):.1f})")
        print(f"RESULT loop_cpu_ms_per_trial={loop_ms:.1f} process_cpu_ms_per_trial={process_ms:.1f} "
              f"children_cpu_ms_per_trial={children_ms:.1f}")


if __name__ == "__main__":
    main()
