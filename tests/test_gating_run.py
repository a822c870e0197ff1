"""The Engineer's gates through `evoforge run` as a user runs it (real CLI subprocesses, offline proposer): a
two-stage task whose candidate training runs stream a loss curve; stage promotion, the median pruner, the NaN
monitor, the suspicious-value flag and duplicate reuse all happen in one run and show in `status` and `show`.

The candidate program is two int constants A and B (seed A = B = 2). The offline proposer moves ints by ±1, so
each proposal is one of the 8 cells around its parent, and every cell has a known fate (FATES in TRAIN): the
seed's own cell is the only one that succeeds untainted, so it is the only parent, and each gate owns 2 of its
8 neighbours (a 1 in 4 chance per proposal; missing one in 35 proposals: (3/4)^35 < 1e-4). Repeats are common,
so duplicates are reused, and at most 9 distinct programs are ever evaluated.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from evoforge.experiment import Engineer
from evoforge.models import TrialStatus
from evoforge.task.loader import load_task

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLI = [sys.executable, "-m", "evoforge.cli"]
TRIALS = 36

TRAIN = textwrap.dedent(
    """\
    # The candidate's training run: reports its loss each step through evoforge.telemetry, prints the result.
    import json, math, runpy, sys, time
    from evoforge.telemetry import report

    p = runpy.run_path(sys.argv[1])
    a, b, stage = int(p["A"]), int(p["B"]), sys.argv[2]
    steps = 4 if stage == "smoke" else 24

    # Only the seed's cell (2,2) succeeds untainted; each of its 8 neighbours is stopped by one gate (2 cells each).
    FATES = {(1, 1): "smoke_fail", (1, 2): "smoke_fail",  # miss the smoke stage's min_score
             (2, 3): "slow", (1, 3): "slow",              # a curve worse than every past one: the median pruner
             (3, 2): "nan", (3, 3): "nan",                # diverge: NaN at step 6 of the full stage
             (2, 1): "suspicious", (3, 1): "suspicious"}  # a final val_loss below the data's floor: flagged

    kind = FATES.get((a, b), "normal")
    for step in range(steps):
        loss = (1.5 if kind == "slow" else 0.5) + 3.5 * math.exp(-0.35 * step)
        if kind == "nan" and step >= 6:
            loss = float("nan")
        report(step=step, loss=loss)
        time.sleep(0.04)
    if stage == "smoke":
        score = 5.0 if kind == "smoke_fail" else loss
    else:
        score = 0.05 if kind == "suspicious" else 1.0
    print(json.dumps({"val_loss": score, "kind": kind}))
    """
)

TASK_YAML = """\
name: gated-toy
problem: problem.md
program: program.py
command: "{python} {{task}}/train.py {{program}} {{stage}}"
objective: {{metric: val_loss, direction: minimize}}
timeout_s: 30
research: {{sampler: ucb1, num_inspirations: 1}}
stages:
  - {{name: smoke, timeout_s: 20, promote: {{min_score: 3.0}}}}
  - {{name: full, timeout_s: 30}}
gates:
  median: {{metric: loss, direction: minimize, warmup_steps: 3, min_trials: 1, stages: [full]}}
  anomaly: {{nan: true, suspicious: {{val_loss: {{below: 0.1}}}}}}
knowledge: {{embeddings: false}}   # the dense encoder is not under test here; it costs ~1 s of CPU a trial
"""


def evoforge(*args: str) -> str:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def show(run_dir: Path, trial_id: int) -> dict[str, Any]:
    return json.loads(evoforge("show", str(run_dir), str(trial_id), "--json"))


@pytest.fixture(scope="module")
def gated_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """One finished run of the gated task; returns its folder and every trial (from `evoforge export`)."""
    root = tmp_path_factory.mktemp("gating")
    task = root / "task"
    task.mkdir()
    (task / "problem.md").write_text("Pick A and B for the lowest validation loss of the toy training run.\n")
    (task / "program.py").write_text("A = 2\nB = 2\n")
    (task / "train.py").write_text(TRAIN)
    (task / "task.yaml").write_text(TASK_YAML.format(python=sys.executable))
    run_dir = root / "run"
    out = evoforge("run", str(task), "--run-dir", str(run_dir), "--llm", "offline", "--trials", str(TRIALS),
                   "--concurrency", "2", "--seed", "0")
    assert "best score" in out
    trials = [json.loads(line) for line in evoforge("export", str(run_dir), "--format", "jsonl").splitlines()]
    assert len(trials) == TRIALS
    return run_dir, trials


def pruned_by(trials: list[dict[str, Any]], gate: str) -> list[dict[str, Any]]:
    return [t for t in trials if t["status"] == "pruned" and t["error_class"] == f"pruned:{gate}"
            and t["reused_from"] is None]


def test_status_counts_pruned_trials_and_time_saved_per_gate(gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    status = json.loads(evoforge("status", str(run_dir), "--json"))
    assert status["pruned"] >= 3 and status["succeeded"] >= 2
    assert status["seconds_saved"] > 0 and status["evaluation_seconds"] > 0
    for gate in ("stage", "median", "anomaly", "duplicate"):
        assert gate in status["saved_by_gate"], status["saved_by_gate"]
        assert status["stopped_by_gate"][gate] >= 1
    assert status["saved_by_gate"]["median"] > 0 and status["saved_by_gate"]["duplicate"] > 0
    assert status["seconds_saved"] == pytest.approx(sum(status["saved_by_gate"].values()), abs=0.01)
    evaluated = sum(t["seconds"] for t in trials)
    assert status["evaluation_seconds"] == pytest.approx(evaluated, abs=0.01)


def test_smoke_stage_prunes_by_its_promotion_rule(gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    trial = show(run_dir, pruned_by(trials, "stage")[0]["id"])
    assert [s["name"] for s in trial["stages"]] == ["smoke"]
    assert trial["stages"][0]["status"] == "succeeded" and trial["stages"][0]["score"] == 5.0
    prune = [d for d in trial["decisions"] if d["action"] == "prune"]
    assert len(prune) == 1 and prune[0]["gate"] == "stage" and prune[0]["stage"] == "smoke"
    assert prune[0]["evidence"]["rule"] == "min_score" and "misses min_score" in prune[0]["reason"]
    assert trial["telemetry"]["smoke/loss"]["points"] == 4
    assert trial["seconds_saved"] > 0 and trial["score"] is None


def test_median_pruner_stops_the_full_stage_with_its_evidence(gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    trial = show(run_dir, pruned_by(trials, "median")[0]["id"])
    assert [(s["name"], s["status"]) for s in trial["stages"]] == [("smoke", "succeeded"), ("full", "pruned")]
    promoted = [d for d in trial["decisions"] if d["gate"] == "stage"]
    assert promoted and promoted[0]["action"] == "promote" and promoted[0]["stage"] == "smoke"
    prune = [d for d in trial["decisions"] if d["action"] == "prune"]
    assert len(prune) == 1 and (prune[0]["gate"], prune[0]["stage"]) == ("median", "full")
    evidence = prune[0]["evidence"]
    assert evidence["step"] >= 3 and evidence["best"] > evidence["reference"] and evidence["trials"] >= 1
    full = trial["telemetry"]["full/loss"]
    assert full["points"] < 24, "the full stage was stopped before its last step"
    assert trial["seconds_saved"] > 0 and trial["seconds"] < max(t["seconds"] for t in trials)


def test_nan_report_prunes_with_the_anomaly_gate(gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    trial = show(run_dir, pruned_by(trials, "anomaly")[0]["id"])
    prune = [d for d in trial["decisions"] if d["action"] == "prune"]
    assert len(prune) == 1 and (prune[0]["gate"], prune[0]["stage"]) == ("anomaly", "full")
    assert prune[0]["evidence"]["monitor"] == "nan" and prune[0]["evidence"]["step"] == 6
    assert "NaN" in prune[0]["reason"]
    assert trial["stages"][-1]["status"] == "pruned" and trial["stages"][-1]["error_class"] == "pruned:anomaly"


def test_duplicate_program_is_reused_not_run(gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    by_id = {t["id"]: t for t in trials}
    reused = [t for t in trials if t["reused_from"] is not None]
    assert reused
    for copy in reused:
        original = by_id[copy["reused_from"]]
        assert original["reused_from"] is None and original["id"] < copy["id"]
        assert (copy["status"], copy["score"], copy["seconds"]) == (original["status"], original["score"], 0.0)
        assert not (run_dir / "trials" / str(copy["id"]) / "stdout.full.log").exists()
    trial = show(run_dir, reused[0]["id"])
    assert [d["gate"] for d in trial["decisions"]] == ["duplicate"]
    assert trial["decisions"][0]["action"] == "reuse" and trial["stages"] == [] and trial["telemetry"] == {}


def test_suspicious_value_flags_the_trial_and_it_is_not_crowned(
        gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    status = json.loads(evoforge("status", str(run_dir), "--json"))
    suspects = [t for t in trials if t["suspect"] and t["reused_from"] is None]
    assert suspects and sorted(t["id"] for t in suspects) == sorted(
        i for i in status["suspect"] if trials[i - 1]["reused_from"] is None)
    suspect = suspects[0]
    assert suspect["status"] == "succeeded" and suspect["score"] == 0.05
    assert status["best_trial"] not in status["suspect"] and status["best_score"] > suspect["score"]
    flags = [d for d in show(run_dir, suspect["id"])["decisions"] if d["action"] == "flag"]
    assert flags and flags[0]["gate"] == "anomaly" and flags[0]["evidence"]["monitor"] == "suspicious"


def test_status_and_show_tables_print_the_gates(gated_run: tuple[Path, list[dict[str, Any]]]) -> None:
    run_dir, trials = gated_run
    table = evoforge("status", str(run_dir))
    assert "time saved by gates" in table
    for gate in ("stage", "median", "anomaly", "duplicate"):
        assert f"saved by {gate}" in table
    text = evoforge("show", str(run_dir), str(pruned_by(trials, "median")[0]["id"]))
    assert "gate median [prune] at full:" in text and "gate stage [promote] at smoke:" in text
    assert "stage full: pruned" in text


def test_learning_curve_example_streams_both_stages_and_stops_a_divergent_run(tmp_path: Path) -> None:
    """examples/learning_curve: the seed trains through smoke and full with its curve recorded per stage; a
    learning rate far too large diverges and never reaches the full stage."""
    task = load_task(EXAMPLES / "learning_curve")
    engineer = Engineer(task)
    seed = asyncio.run(engineer.evaluate(task.seed_program, tmp_path / "seed"))
    assert seed.status is TrialStatus.SUCCEEDED and seed.score is not None and 0.07 < seed.score < 1.0
    assert [s.name for s in seed.stages] == ["smoke", "full"] and not seed.suspect
    assert {p.stage for p in seed.telemetry} == {"smoke", "full"}
    assert max(p.step or 0 for p in seed.telemetry if p.stage == "full") >= 4000
    wild = task.seed_program.replace("LEARNING_RATE = 0.25", "LEARNING_RATE = 2.5")
    assert wild != task.seed_program
    diverged = asyncio.run(engineer.evaluate(wild, tmp_path / "wild"))
    assert diverged.status is TrialStatus.PRUNED and [s.name for s in diverged.stages] == ["smoke"]
    assert any(d.action == "prune" and d.gate in ("stage", "anomaly") for d in diverged.decisions)
