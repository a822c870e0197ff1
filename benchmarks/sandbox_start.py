"""Start-to-result benchmark of one sandboxed evaluation: N evaluations of a trivial Python evaluator through the
Engineer (the code path of every trial: supervisor, jail, harness, evaluate(), result over the channel), with the
task's default limits (isolation auto), beside N bare `python -c pass` starts of the same interpreter.

The two are interleaved in one run, so a busy machine slows both alike; the ratio of the medians is the measure.
The evoforge package is byte-compiled first, as an install leaves it (the jail cannot write bytecode, and
PYTHONDONTWRITEBYTECODE may have kept an editable checkout from doing so).
Under bwrap a run's evaluations go to warm workers (evoforge/experiment/warm.py): one jail per evaluation slot whose
PID 1 forks a fresh child per evaluation. The sandboxed evaluations timed for the ratio are what a trial of a run
waits for once its slot's worker is up (the job handed over, the child's own jail set up, the evaluation, the clean-up
of the jail); a worker's own start (bwrap and an interpreter, once per slot, again only after a timeout or a gate's
stop) is timed apart: the first evaluation of a fresh Engineer. EVOFORGE_WARM=0 times the cold path instead.
Also timed (for information, not in the ratio): the same evaluation when the evaluator runs the candidate through
`run_candidate`, i.e. a second jail. Ends with `RESULT sandbox_start_ratio=<sandbox/bare> sandbox_ms=<median>
bare_ms=<median> fresh_worker_ms=<median>`; without any sandbox (isolation auto refuses) it ends with one line saying
why. `--run N` instead runs `evoforge run` on the trivial task (N trials, offline proposer, default settings) and
prints the CPU time of its child processes (the sandbox and the evaluations) per evaluated trial.
Usage: python benchmarks/sandbox_start.py [--n 30] [--run N]; `measure(n)` returns the numbers as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import evoforge
from evoforge.errors import EvoforgeError
from evoforge.experiment.engineer import Engineer
from evoforge.experiment.isolation import resolve
from evoforge.memory.record import Record
from evoforge.models import TrialStatus
from evoforge.task.loader import Task, load_task

TASK_YAML = ("name: trivial\nproblem: Return a constant.\nprogram: program.py\nevaluator: evaluator.py\n"
             "objective: {metric: score, direction: maximize}\ntimeout_s: 30\n")
EVALUATOR = "def evaluate(program_path):\n    return {'score': 1.0}\n"
CANDIDATE_EVALUATOR = ("from evoforge.sandbox import run_candidate\n\n"
                       "def evaluate(program_path):\n"
                       "    run = run_candidate(program_path, function='score')\n"
                       "    return {'score': float(run.value) if run.ok else 0.0}\n")
PROGRAM = "x = 1\n\ndef score():\n    return 1.0\n"


def trivial_task(root: Path, evaluator: str = EVALUATOR) -> Task:
    """A task folder whose evaluator returns a constant (nothing but the sandbox's own cost is measured)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in (("task.yaml", TASK_YAML), ("evaluator.py", evaluator), ("program.py", PROGRAM)):
        (root / name).write_text(text, encoding="utf-8")
    return load_task(root)


def _bare_ms() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return (time.perf_counter() - start) * 1000


async def _sandbox_ms(engineer: Engineer, trial_dir: Path) -> float:
    start = time.perf_counter()
    outcome = await engineer.evaluate(PROGRAM, trial_dir)
    elapsed = (time.perf_counter() - start) * 1000
    if outcome.status is not TrialStatus.SUCCEEDED or outcome.score != 1.0:
        raise SystemExit(f"the trivial evaluation failed: {outcome.error_class}: {outcome.error_message}")
    return elapsed


def measure(n: int = 30, *, with_candidate: bool = False) -> dict[str, float]:
    """Median milliseconds of `n` sandboxed evaluations and `n` bare interpreter starts (interleaved, after one
    warm-up of each), and their ratio: {"sandbox_ms", "bare_ms", "sandbox_start_ratio"} (and both p90s); with
    `with_candidate` also "candidate_ms", an evaluation whose evaluator calls run_candidate (two jails).
    Raises IsolationUnavailable when the default isolation (auto) finds no sandbox."""
    compileall.compile_dir(Path(evoforge.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        engineer = Engineer(trivial_task(Path(tmp) / "task"))
        helper = Engineer(trivial_task(Path(tmp) / "task-candidate", CANDIDATE_EVALUATOR))
        runs = Path(tmp) / "run" / "trials"

        async def interleaved() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"sandbox": [], "bare": [], "candidate": [], "fresh": []}
            for i in range(-1, n):  # -1: the warm-up
                times["sandbox"].append(await _sandbox_ms(engineer, runs / f"{i:04d}"))
                times["bare"].append(_bare_ms())
                if with_candidate:
                    times["candidate"].append(await _sandbox_ms(helper, runs / f"c{i:04d}"))
                if i % 10 == 0:  # a fresh Engineer: its first evaluation starts its worker
                    times["fresh"].append(await _sandbox_ms(Engineer(engineer.task), runs / f"f{i:04d}"))
            return {name: values if name == "fresh" else values[1:] for name, values in times.items()}

        times = asyncio.run(interleaved())
    sandbox_ms, bare_ms = statistics.median(times["sandbox"]), statistics.median(times["bare"])
    result = {"sandbox_ms": sandbox_ms, "bare_ms": bare_ms, "sandbox_start_ratio": sandbox_ms / bare_ms,
              "sandbox_p90_ms": _p90(times["sandbox"]), "bare_p90_ms": _p90(times["bare"]),
              "fresh_ms": statistics.median(times["fresh"]), "fresh_p90_ms": _p90(times["fresh"])}
    if with_candidate:
        result["candidate_ms"] = statistics.median(times["candidate"])
        result["candidate_p90_ms"] = _p90(times["candidate"])
    return result


CHILD = ("import resource, sys\nfrom evoforge.__main__ import main\nstatus = main(sys.argv[1:])\n"
         "own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
         "print('RUSAGE', own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime)\nsys.exit(status)\n")


def run_cpu(trials: int) -> dict[str, float]:
    """`evoforge run` of the trivial task (offline proposer, default settings) in a child process: the CPU seconds of
    that process and of its children (sandboxes, evaluations), per evaluated trial (a reused duplicate runs nothing)."""
    with tempfile.TemporaryDirectory() as tmp:
        task, run = trivial_task(Path(tmp) / "task"), Path(tmp) / "run"
        done = subprocess.run([sys.executable, "-c", CHILD, "run", str(task.root), "--run-dir", str(run), "--llm",
                               "offline", "--trials", str(trials)], capture_output=True, text=True, check=False)
        lines = [line.split() for line in done.stdout.splitlines() if line.startswith("RUSAGE ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"evoforge run exited {done.returncode}: {done.stderr[-2000:]}")
        with Record.for_run_dir(run, read_only=True) as record:
            evaluated = sum(1 for trial in record.trials() if trial.reused_from is None)
    own, children = float(lines[-1][1]), float(lines[-1][2])
    return {"evaluated": evaluated, "own_ms": 1000 * own / evaluated, "children_ms": 1000 * children / evaluated}


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="evaluations (and bare starts) to time")
    parser.add_argument("--no-candidate", action="store_true", help="skip the run_candidate row")
    parser.add_argument("--run", type=int, default=0, metavar="N", help="CPU per trial of an N-trial evoforge run")
    opts = parser.parse_args()
    try:
        mode = resolve("auto", network=False)
    except EvoforgeError as exc:
        raise SystemExit(f"sandbox_start: no sandbox to measure: {exc}") from None
    if opts.run:
        cpu = run_cpu(opts.run)
        print(f"isolation {mode}; evoforge run, {opts.run} trials, {cpu['evaluated']} evaluated; {sys.executable}")
        print(f"RESULT children_cpu_ms_per_trial={cpu['children_ms']:.1f} own_cpu_ms_per_trial={cpu['own_ms']:.1f}")
        return
    result = measure(opts.n, with_candidate=not opts.no_candidate)
    print(f"isolation {mode}, {opts.n} of each, interleaved; {sys.executable}")
    print(f"{'':40s} {'median ms':>10s} {'p90 ms':>8s}")
    for label, key in (("sandboxed evaluation (trivial evaluator)", "sandbox"), ("bare python -c pass", "bare"),
                       ("  with run_candidate (a second jail)", "candidate"),
                       ("first evaluation in a fresh worker", "fresh")):
        if f"{key}_ms" in result:
            print(f"{label:40s} {result[f'{key}_ms']:10.1f} {result[f'{key}_p90_ms']:8.1f}")
    print(f"RESULT sandbox_start_ratio={result['sandbox_start_ratio']:.2f} sandbox_ms={result['sandbox_ms']:.1f} "
          f"bare_ms={result['bare_ms']:.1f} fresh_worker_ms={result['fresh_ms']:.1f}")


if __name__ == "__main__":
    main()
