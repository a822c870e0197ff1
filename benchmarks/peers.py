"""evoforge beside a peer (OpenEvolve), in one run on this machine: trial cost at default settings, concurrency 1.

Both run against the instant loopback fake LLM (tests/fake_llm.py, served from this process; it sets TCP_NODELAY as
real servers do — without it, a client that keeps its connection alive, as OpenEvolve's does, waited ~40 ms per answer
for a delayed ACK) and a trivial evaluator; each runs in a child process under benchmarks/_probe.py, which reads the
CPU of that process itself (RUSAGE_SELF: the fake server's CPU and evoforge's sandbox processes are not in it).
evoforge runs as `evoforge run` does by default: embeddings, the review and the sandbox on. OpenEvolve is installed
from the package registry into benchmarks/.peers-venv the first time (skipped, with a message, when that fails); it
evaluates in its own worker process, unsandboxed. The two sides run in alternating pairs (evoforge, OpenEvolve,
evoforge, OpenEvolve; `--pairs`), pooled: this VM's speed drifts by 10-20% over minutes. Then: evoforge's CPU per
trial with 100 and with 10,000 trials already in the record (pre-filled as overhead.py does), the sandbox start
ratio (benchmarks/sandbox_start.py, when present) and the busy-slots measure. Prints a table and ends with one
`RESULT` line.

    .venv/bin/python benchmarks/peers.py [--quick] [--trials N] [--pairs 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

from _harness import (
    ROOT,
    Answers,
    FakeLLM,
    Probed,
    Window,
    evoforge_cli,
    finish_times,
    make_task,
    measure_busy,
    prefill,
    probe,
    window,
)

PEER_VENV = Path(__file__).with_name(".peers-venv")
PEER_RUNNER = Path(__file__).with_name("_openevolve_run.py")
OE_EVALUATOR = """import runpy, time
def evaluate(program_path):
    x = runpy.run_path(program_path)["x"]
    with open({log!r}, "a") as f:  # when each evaluation ends, for the benchmark
        f.write(f"{{time.time()}}\\n")
    return {{"score": -(x - 3.0) ** 2}}
"""
BLOCK = 100  # trials in the first / last block


def peer_python() -> Path | None:
    """OpenEvolve's interpreter (its own venv, made and filled the first time); None, with a message, if that fails."""
    python = PEER_VENV / "bin" / "python"
    check = [str(python), "-c", "import openevolve"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing openevolve into {PEER_VENV} ...", flush=True)
    try:
        venv.create(PEER_VENV, with_pip=True, clear=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "openevolve"], capture_output=True,
                              text=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"OpenEvolve skipped: cannot make its venv: {exc}")
        return None
    if done.returncode != 0 or subprocess.run(check, capture_output=True).returncode != 0:
        print(f"OpenEvolve skipped: `pip install openevolve` failed: {(done.stderr or '').strip()[-300:]}")
        return None
    return python


def run_evoforge(tmp: Path, fake: FakeLLM, trials: int) -> tuple[Probed, list[float]]:
    task = make_task(tmp / "task-evoforge", 0.0, fake.base_url)
    run_dir = tmp / "evoforge"
    probed = evoforge_cli(["run", str(task), "--run-dir", str(run_dir), "--llm", "fake-model", "--trials",
                           str(trials + 1), "--concurrency", "1", "--seed", "0"], tmp / "evoforge.json",
                          log=tmp / "evoforge.log")
    return probed, finish_times(run_dir)


def run_openevolve(tmp: Path, fake: FakeLLM, python: Path, trials: int) -> tuple[Probed, list[float]] | None:
    task = tmp / "task-openevolve"
    task.mkdir()
    (task / "program.py").write_text("x = 1.0\n# knob\n")
    log = tmp / "openevolve-evaluations.txt"
    (task / "evaluator.py").write_text(OE_EVALUATOR.format(log=str(log)))
    probed = probe(python, [str(PEER_RUNNER), str(task), fake.base_url, str(trials), str(tmp / "openevolve")],
                   tmp / "openevolve.json", log=tmp / "openevolve.log")
    ends = sorted(float(line) for line in log.read_text().split()) if log.exists() else []
    if probed.status != 0 or len(ends) < 3:
        print(f"OpenEvolve failed (exit {probed.status}, {len(ends)} evaluations): "
              f"{(tmp / 'openevolve.log').read_text()[-1500:]}")
        return None
    return probed, ends[1:]  # the first evaluation is the initial program's


def growth(tmp: Path, fake: FakeLLM, in_record: int, trials: int, label: str) -> Window:
    """evoforge's CPU per trial (steady state) with `in_record` trials already in the record."""
    task = make_task(tmp / f"task-growth-{label}", 0.0, fake.base_url)
    run_dir = tmp / f"growth-{label}"
    evoforge_cli(["run", str(task), "--run-dir", str(run_dir), "--llm", "fake-model", "--trials", "1",
                  "--concurrency", "1"], tmp / "seed.json")
    prefill(run_dir, in_record)
    probed = evoforge_cli(["resume", str(run_dir), "--trials", str(1 + in_record + trials)],
                          tmp / f"growth-{label}.json", log=tmp / f"growth-{label}.log")
    ends = finish_times(run_dir, after_id=1 + in_record)
    return window(ends, probed, 1, len(ends) - 1)  # from the first new trial's end: start-up is paid once


def growths(tmp: Path, fake: FakeLLM, trials: int, rounds: int) -> tuple[Window, Window]:
    """CPU per trial with 100 and with 10,000 trials in the record, measured in alternating rounds (a busy machine's
    load drifts over minutes); each, pooled over its rounds."""
    found: dict[int, list[Window]] = {100: [], 10000: []}
    for i in range(rounds):
        for size in (100, 10000):
            found[size].append(growth(tmp, fake, size, trials, f"{size}-{i}"))
    pooled = []
    for size in (100, 10000):
        n = sum(w.trials for w in found[size])
        pooled.append(Window(n, sum(w.wall_ms * w.trials for w in found[size]) / n,
                             sum(w.cpu_ms * w.trials for w in found[size]) / n))
        rounds_text = ", ".join(f"{w.cpu_ms:.1f}" for w in found[size])
        print(f"  {size:>6} in the record: CPU ms per trial by round {rounds_text}")
    return pooled[0], pooled[1]


def sandbox_start_ratio(quick: bool) -> float:
    """benchmarks/sandbox_start.py's measure(n), where it exists; nan else."""
    path = Path(__file__).with_name("sandbox_start.py")
    if not path.exists():
        print("sandbox_start_ratio: benchmarks/sandbox_start.py is not here yet (nan)")
        return math.nan
    spec = importlib.util.spec_from_file_location("sandbox_start", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.measure(5 if quick else 20)
    if isinstance(result, dict):
        print("sandbox start: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
        return float(result["sandbox_start_ratio"])
    return float(result)


def row(name: str, probed: Probed, ends: list[float]) -> tuple[str, float, float]:
    """One table line: steady-state wall and own CPU per trial, whole-run CPU with children, first/last blocks."""
    n = len(ends)
    whole = window(ends, probed, 0, n - 1)
    first, last = window(ends, probed, 0, min(BLOCK, n - 1)), window(ends, probed, max(0, n - 1 - BLOCK), n - 1)
    total_cpu = 1000 * (probed.cpu_self_s + probed.cpu_children_s) / n
    print(f"{name:<14} {n:>7} {whole.wall_ms:>10.1f} {whole.cpu_ms:>10.1f} {total_cpu:>12.1f} "
          f"{first.wall_ms:>7.1f} → {last.wall_ms:<7.1f} {first.cpu_ms:>7.1f} → {last.cpu_ms:<7.1f} "
          f"{probed.wall_s:>8.1f}")
    return name, whole.wall_ms, whole.cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials (a smoke run)")
    parser.add_argument("--trials", type=int, default=None, help="trials per side (default 1,000; --quick 60)")
    parser.add_argument("--no-peer", action="store_true", help="skip OpenEvolve")
    parser.add_argument("--pairs", type=int, default=None, help="evoforge and OpenEvolve runs, alternating, pooled "
                        "(default 2; --quick 1): this VM's speed drifts by 10-20% over minutes")
    args = parser.parse_args()
    trials = args.trials or (60 if args.quick else 1000)
    pairs = max(1, args.pairs or (1 if args.quick else 2))
    per_size, rounds = (20, 1) if args.quick else (150, 3)  # rounds of 75 differed by up to 20% on this VM
    python = None if args.no_peer else peer_python()
    with tempfile.TemporaryDirectory() as name, FakeLLM() as fake:
        tmp = Path(name)
        fake.set_handler(Answers(0.0))
        print(f"{trials} trials each, concurrency 1, instant fake LLM, trivial evaluator; per trial, steady state "
              "(from the first trial's end to the last's); CPU = the process itself unless said")
        print(f"{'':<14} {'trials':>7} {'wall ms':>10} {'cpu ms':>10} {'cpu+kids ms':>12} "
              f"{'wall ms first→last ' + str(BLOCK):>19} {'cpu ms first→last':>19} {'run s':>8}")
        evo_rows, peer_rows = [], []
        for i in range(pairs):  # alternating, so both sides see the same drift of this VM's speed
            side = tmp / f"pair-{i + 1}"
            side.mkdir()
            evo_rows.append(row(f"evoforge #{i + 1}", *run_evoforge(side, fake, trials)))
            if python is not None:
                result = run_openevolve(side, fake, python, trials)
                if result is not None:
                    peer_rows.append(row(f"OpenEvolve #{i + 1}", *result))
        evo = ("evoforge", sum(r[1] for r in evo_rows) / pairs, sum(r[2] for r in evo_rows) / pairs)
        ratio = math.nan
        if len(peer_rows) == pairs:
            peer_wall = sum(r[1] for r in peer_rows) / pairs
            ratio = evo[1] / peer_wall
            print(f"mean of {pairs}: evoforge {evo[1]:.1f} ms wall, {evo[2]:.1f} ms CPU per trial; OpenEvolve "
                  f"{peer_wall:.1f} ms wall per trial")
        small, large = growths(tmp, fake, per_size, rounds)
        print(f"evoforge with 100 trials in the record: {small.wall_ms:.1f} ms wall, {small.cpu_ms:.1f} ms CPU per "
              f"trial; with 10,000: {large.wall_ms:.1f} ms wall, {large.cpu_ms:.1f} ms CPU ({small.trials} and "
              f"{large.trials} trials)")
        start_ratio = sandbox_start_ratio(args.quick)
        busy, line = measure_busy(tmp, fake, quick=args.quick)
        print(line)
        print(measure_busy(tmp, fake, quick=args.quick, lean=True)[1] + " (for comparison, not in the RESULT)")
        print(f"RESULT wall_ratio_vs_openevolve={ratio:.2f} cpu_ms_per_trial={evo[2]:.1f} "
              f"growth_10k_100={large.cpu_ms / small.cpu_ms:.2f} sandbox_start_ratio={start_ratio:.2f} busy={busy:.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
