"""Start-up benchmark of the reading commands: wall-clock seconds of `evoforge --help`, `status`, `best` and `show`
as a user runs them (a fresh interpreter each time, output to a pipe), on a small record made here.

Each command runs `--repeat` times (default 5); the median is reported, and the modules a command did not need are
listed (`python -X importtime` tells where the rest goes). Ends with
`RESULT help_s=<median> status_s=<median> best_s=<median> show_s=<median>`. Usage: python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from evoforge.memory.record import Record
from evoforge.models import Digest, Outcome, TrialStatus

HEAVY = ("numpy", "openai", "httpx", "jinja2", "yaml", "evoforge.loop", "evoforge.experiment", "evoforge.llm")
PROBE = ("import sys; from evoforge.__main__ import main; main(sys.argv[1:]); "
         "print(' '.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)")


def make_run(run_dir: Path) -> None:
    record = Record.for_run_dir(run_dir, create=True)
    record.create_run(task_name="bench", config={}, seed=0, task_snapshot={}, stopping={"trials": 2})
    seed = record.add_trial(parent_ids=[], inspiration_ids=[], name="seed", motivation="", code="x = 1\n", diff="",
                            proposer="seed", model=None).id
    record.finish_trial(seed, Outcome(status=TrialStatus.SUCCEEDED, score=1.0, metrics={"x": 1}), Digest("seed"))
    child = record.add_trial(parent_ids=[seed], inspiration_ids=[], name="x=2", motivation="", code="x = 2\n",
                             diff="-x = 1\n+x = 2\n", proposer="offline", model=None).id
    record.finish_trial(child, Outcome(status=TrialStatus.SUCCEEDED, score=2.0, metrics={"x": 2}), Digest("x=2"))
    record.close()


def timed(args: list[str], repeat: int) -> tuple[float, str]:
    times, heavy = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                              text=True, timeout=120)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"evoforge {' '.join(args)} failed: {done.stderr[-500:]}")
        heavy = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return statistics.median(times), heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        make_run(run_dir)
        baseline, _ = timed(["--version"], opts.repeat)
        results = {}
        for name, args in (("help", ["--help"]), ("status", ["status", str(run_dir)]),
                           ("best", ["best", str(run_dir)]), ("show", ["show", str(run_dir), "2"])):
            seconds, heavy = timed(args, opts.repeat)
            results[name] = seconds
            print(f"{name:7s} {seconds:6.3f} s   heavy modules imported: {heavy or 'none'}")
        print(f"(--version, the floor of any command: {baseline:.3f} s)")
    print("RESULT " + " ".join(f"{name}_s={seconds:.3f}" for name, seconds in results.items()))


if __name__ == "__main__":
    main()
