"""Gates on synthetic data: curve pruners and anomaly monitors, the static gate, fingerprints, telemetry tailing."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from helpers import task_object
from pydantic import ValidationError

from evoforge.config import (
    Bound,
    GatesConfig,
    MedianConfig,
    ParentRelativeConfig,
    PatienceConfig,
    SlowdownConfig,
    StaticGateConfig,
    TaskConfig,
)
from evoforge.experiment.gates import (
    CurveGate,
    CurveState,
    MedianGate,
    NanMonitor,
    ParentRelativeGate,
    PatienceGate,
    SlowdownMonitor,
    SuspiciousMonitor,
    check_static,
    program_fingerprint,
)
from evoforge.experiment.telemetry_stream import TelemetryTail
from evoforge.models import Curve, Direction, EvaluationHistory, GateDecision, TelemetryPoint
from evoforge.task.loader import Task

STEPS = 40


def points(values: list[float], *, metric: str = "loss", stage: str = "main", dt: float = 0.05) -> list[TelemetryPoint]:
    return [TelemetryPoint(stage, step, metric, v, step * dt) for step, v in enumerate(values)]


def as_curve(values: list[float], dt: float = 0.05) -> Curve:
    return tuple((step, v, step * dt) for step, v in enumerate(values))


def run_gate(gate: CurveGate, series: list[TelemetryPoint], history: EvaluationHistory | None = None,
             stage: str = "main") -> GateDecision | None:
    """Feed points in order as the stage runner does; the first prune (or flag) decision, or None."""
    state = CurveState(stage=stage, history=history or EvaluationHistory())
    for point in series:
        state.series.setdefault(point.name, []).append(point)
        decision = gate.check(point, state)
        if decision is not None:
            return decision
    return None


def loss_curve(floor: float, rate: float, noise: float, rng: random.Random) -> list[float]:
    return [floor + (3.0 - floor) * math.exp(-rate * s) + rng.gauss(0, noise) for s in range(STEPS)]


def family(seed: int = 7, n: int = 24) -> list[list[float]]:
    """Training-like loss curves: lower floors converge lower, noise on every report."""
    rng = random.Random(seed)
    return [loss_curve(rng.uniform(0.5, 2.0), rng.uniform(0.08, 0.15), 0.02, rng) for _ in range(n)]


def sequential(make_gate: object, curves: list[list[float]], parent_of: dict[int, int] | None = None
               ) -> dict[int, GateDecision]:
    """Run curves one after another as trials; completed ones join the history. Returns the pruned ones."""
    pruned: dict[int, GateDecision] = {}
    done: list[Curve] = []
    for i, values in enumerate(curves):
        parent = (parent_of or {}).get(i)
        parent_curves = {"main": {"loss": as_curve(curves[parent])}} if parent is not None else {}
        history = EvaluationHistory(curves={"main": {"loss": list(done)}}, parent_curves=parent_curves)
        decision = run_gate(make_gate(), points(values), history)  # type: ignore[operator]
        if decision is None:
            done.append(as_curve(values))
        else:
            pruned[i] = decision
    return pruned


# ---- curve pruners ---------------------------------------------------------------------------------------------

def test_median_prunes_bad_curves_but_never_the_best() -> None:
    curves = family()
    best = min(range(len(curves)), key=lambda i: curves[i][-1])
    pruned = sequential(lambda: MedianGate(MedianConfig(metric="loss", warmup_steps=5, min_trials=3)), curves)
    assert best not in pruned
    assert len(pruned) >= len(curves) // 3
    assert all(i >= 3 for i in pruned)  # the first min_trials trials have nothing to compare with
    d = next(iter(pruned.values()))
    assert d.gate == "median" and d.action == "prune" and d.evidence["step"] >= 5
    assert d.evidence["best"] > d.evidence["reference"] and d.evidence["trials"] >= 3
    assert "median" in d.reason


def test_median_needs_min_trials_and_respects_warmup() -> None:
    good = as_curve([1.0] * 10)
    bad = points([5.0] * 10)
    two = EvaluationHistory(curves={"main": {"loss": [good, good]}})
    assert run_gate(MedianGate(MedianConfig(min_trials=3)), bad, two) is None
    three = EvaluationHistory(curves={"main": {"loss": [good, good, good]}})
    decision = run_gate(MedianGate(MedianConfig(min_trials=3, warmup_steps=4)), bad, three)
    assert decision is not None and decision.evidence["step"] == 4


def test_median_is_direction_aware_for_accuracy() -> None:
    history = EvaluationHistory(curves={"main": {"acc": [as_curve([0.5 + 0.01 * s for s in range(20)])] * 3}})
    cfg = MedianConfig(metric="acc", direction=Direction.MAXIMIZE)
    better = points([0.6 + 0.01 * s for s in range(20)], metric="acc")
    worse = points([0.4 + 0.01 * s for s in range(20)], metric="acc")
    assert run_gate(MedianGate(cfg), better, history) is None
    decision = run_gate(MedianGate(cfg), worse, history)
    assert decision is not None and decision.evidence["step"] == 0


def test_median_ignores_other_stages_metrics_and_nan() -> None:
    history = EvaluationHistory(curves={"main": {"loss": [as_curve([1.0] * 5)] * 3}})
    cfg = MedianConfig(stages=["full"])
    assert run_gate(MedianGate(cfg), points([9.0] * 5), history) is None  # stage "main" is not watched
    assert run_gate(MedianGate(MedianConfig()), points([9.0] * 5, metric="acc"), history) is None
    assert run_gate(MedianGate(MedianConfig()), points([math.nan] * 5), history) is None


def test_parent_relative_fires_beyond_margin_only() -> None:
    parent = [2.0 - 0.02 * s for s in range(30)]
    history = EvaluationHistory(parent_curves={"main": {"loss": as_curve(parent)}})
    cfg = ParentRelativeConfig(margin=0.1, warmup_steps=3)
    close = points([v * 1.05 for v in parent])
    assert run_gate(ParentRelativeGate(cfg), close, history) is None
    far = points([v * 1.05 if s < 10 else v * 1.3 for s, v in enumerate(parent)])
    decision = run_gate(ParentRelativeGate(cfg), far, history)
    # running bests: the trial keeps its step-9 best 1.911 while the parent improves; bound 1.1 x parent < 1.911
    # first at step 14 (parent 1.72)
    assert decision is not None and decision.gate == "parent_relative" and decision.evidence["step"] == 14
    assert decision.evidence["reference"] == pytest.approx(parent[14])
    assert decision.evidence["best"] == pytest.approx(parent[9] * 1.05)
    assert run_gate(ParentRelativeGate(cfg), far, EvaluationHistory()) is None  # no parent curve


def test_parent_relative_never_prunes_the_best_of_a_lineage() -> None:
    curves = family(seed=3)
    best = min(range(len(curves)), key=lambda i: curves[i][-1])
    parent_of = {i: i - 1 for i in range(1, len(curves))}
    pruned = sequential(lambda: ParentRelativeGate(ParentRelativeConfig(margin=0.05, warmup_steps=5)), curves,
                        parent_of)
    assert pruned and best not in pruned


def test_patience_fires_on_a_plateau() -> None:
    values = [3.0 - 0.1 * s for s in range(10)] + [2.1] * 20
    decision = run_gate(PatienceGate(PatienceConfig(patience=5, min_delta=0.01)), points(values))
    assert decision is not None and decision.gate == "patience"
    assert decision.evidence["step"] == 14 and decision.evidence["best_step"] == 9
    improving = [3.0 - 0.05 * s for s in range(30)]
    assert run_gate(PatienceGate(PatienceConfig(patience=5, min_delta=0.01)), points(improving)) is None


def test_patience_never_prunes_the_best_of_the_family() -> None:
    curves = family(seed=11)
    best = min(range(len(curves)), key=lambda i: curves[i][-1])
    pruned = sequential(lambda: PatienceGate(PatienceConfig(patience=8, min_delta=0.01, warmup_steps=5)), curves)
    assert best not in pruned


# ---- anomaly monitors ------------------------------------------------------------------------------------------

def test_nan_and_inf_prune_at_once() -> None:
    decision = run_gate(NanMonitor(), points([1.0] * 40 + [math.nan]))
    assert decision is not None and decision.reason == "loss is NaN at step 40"
    assert decision.gate == "anomaly" and decision.evidence["monitor"] == "nan"
    inf = run_gate(NanMonitor(), points([1.0, math.inf], metric="grad_norm"))
    assert inf is not None and inf.reason == "grad_norm is +inf at step 1"
    assert run_gate(NanMonitor(), points([1.0, 2.0, 1e300])) is None


def test_slowdown_compares_time_at_the_same_step() -> None:
    parent = tuple((s, 1.0, 0.1 * s) for s in range(0, 50, 5))  # step 45 at 4.5 s
    history = EvaluationHistory(parent_curves={"main": {"loss": parent}})
    monitor = SlowdownMonitor(SlowdownConfig(factor=3.0, min_seconds=1.0), "main", history)
    assert monitor.parent_time(12) == pytest.approx(1.2)
    assert monitor.parent_time(60) is None
    slow = [TelemetryPoint("main", s, "loss", 1.0, 0.25 * s) for s in range(50)]  # 2.5x: fine
    assert run_gate(SlowdownMonitor(SlowdownConfig(factor=3.0), "main", history), slow, history) is None
    slower = [TelemetryPoint("main", s, "loss", 1.0, 0.4 * s) for s in range(50)]  # 4x: pruned once t >= 1 s
    decision = run_gate(SlowdownMonitor(SlowdownConfig(factor=3.0), "main", history), slower, history)
    assert decision is not None and decision.evidence["monitor"] == "slowdown"
    assert decision.evidence["step"] == 3 and decision.evidence["reference"] == pytest.approx(0.3)
    assert run_gate(SlowdownMonitor(SlowdownConfig(), "main", EvaluationHistory()), slower) is None


def test_suspicious_value_flags_once_and_checks_final_metrics() -> None:
    monitor = SuspiciousMonitor({"loss": Bound(below=1.2), "acc": Bound(above=0.99)})
    decision = run_gate(monitor, points([2.0, 1.5, 1.1, 1.0]))
    assert decision is not None and decision.action == "flag" and decision.evidence["step"] == 2
    assert decision.evidence["reference"] == 1.2
    assert run_gate(monitor, points([1.0])) is None  # flagged once per metric
    flags = monitor.check_final({"acc": 1.0, "name": "x", "ok": True}, "main")
    assert [f.evidence["metric"] for f in flags] == ["acc"] and flags[0].evidence["source"] == "final"


# ---- static gate and fingerprint -------------------------------------------------------------------------------

def make_task(tmp_path: Path, program: str = "program.py", **static: object) -> Task:
    return task_object(tmp_path, problem_text="", problem="p.md", program=program, evaluator="e.py",
                       gates=GatesConfig(static=StaticGateConfig(**static)))


def test_static_gate_checks_syntax_entry_points_and_size(tmp_path: Path) -> None:
    task = make_task(tmp_path, entry_points=["run", "WIDTH"], max_bytes=200)
    ok = "import numpy as np\nWIDTH = 3\ndef run():\n    return 1\n"
    assert check_static(ok, task) is None
    bad = check_static("def run(:\n", task)
    assert bad is not None and bad.action == "reject" and bad.evidence["check"] == "syntax"
    assert "line 1" in bad.reason
    missing = check_static("WIDTH = 3\ndef helper():\n    pass\n", task)
    assert missing is not None and missing.evidence == {"check": "entry_point", "missing": ["run"]}
    nested = check_static("WIDTH = 3\nclass A:\n    def run(self):\n        pass\n", task)
    assert nested is not None and nested.evidence["missing"] == ["run"]
    big = check_static(ok + "#" * 300, task)
    assert big is not None and big.evidence["check"] == "size" and "max_bytes=200" in big.reason
    assert check_static("def run(:", make_task(tmp_path, enabled=False)) is None


def test_static_gate_on_a_non_python_program(tmp_path: Path) -> None:
    task = make_task(tmp_path, program="kernel.cu", entry_points=["attention"])
    assert check_static("__global__ void attention() {", task) is None
    missing = check_static("__global__ void attention_v2() {", task)
    assert missing is not None and missing.evidence["missing"] == ["attention"]


def test_fingerprint_ignores_comments_whitespace_and_docstrings() -> None:
    a = 'def f(x):\n    """Doc."""\n    return x + 1  # add one\n'
    b = "# header\n\ndef f( x ):\n\n    return (x+1)\n"
    assert program_fingerprint(a, "p.py") == program_fingerprint(b, "p.py")
    assert program_fingerprint(a, "p.py") != program_fingerprint("def f(x):\n    return x + 2\n", "p.py")
    assert program_fingerprint(a, "p.py") != program_fingerprint("def g(x):\n    return x + 1\n", "p.py")
    assert program_fingerprint("a  b\n c", "k.cu") == program_fingerprint("a b c\n", "k.cu")
    assert program_fingerprint("a b c", "k.cu") != program_fingerprint("a b d", "k.cu")
    assert len(program_fingerprint("x = (", "p.py")) == 64  # unparseable Python still has a fingerprint


# ---- configuration and telemetry tail --------------------------------------------------------------------------

def test_stage_and_gate_settings_validate(tmp_path: Path) -> None:
    base = {"name": "t", "problem": "p", "program": "p.py", "evaluator": "e.py"}
    cfg = TaskConfig(**base, stages=[{"name": "smoke", "timeout_s": 5, "promote": {"min_score": 0}},
                                     {"name": "full", "timeout_s": 60, "args": {"steps": 100}}],
                     gates={"median": {"metric": "loss", "warmup_steps": 5}, "anomaly": {"suspicious":
                            {"loss": {"below": 1.2}}}})
    assert cfg.stages is not None and cfg.stages[1].args == {"steps": 100}
    assert cfg.gates.median is not None and cfg.gates.anomaly.nan and cfg.gates.patience is None
    with pytest.raises(ValidationError, match="unique"):
        TaskConfig(**base, stages=[{"name": "a", "timeout_s": 1}, {"name": "a", "timeout_s": 2}])
    with pytest.raises(ValidationError, match="at least one"):
        TaskConfig(**base, stages=[{"name": "a", "timeout_s": 1, "promote": {}}])
    with pytest.raises(ValidationError, match="'below' or 'above'"):
        TaskConfig(**base, gates={"anomaly": {"suspicious": {"loss": {}}}})
    with pytest.raises(ValidationError, match="extra"):
        TaskConfig(**base, gates={"median": {"metrc": "loss"}})


def test_telemetry_tail_reads_complete_lines_and_skips_garbage(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.jsonl"
    tail = TelemetryTail(path, "main", started_at=100.0)
    assert tail.poll() == []
    with open(path, "w") as fh:
        fh.write(json.dumps({"t": 101.5, "step": 1, "loss": 2.0, "acc": 0.5}) + "\n")
        fh.write("not json\n[1, 2]\n")
        fh.write('{"t": 102.0, "step": 2, "loss": NaN, "note": "x", "flag": true}\n')
        fh.write('{"t": 102.5, "step": 3, "lo')
    got = tail.poll()
    assert [(p.step, p.name, p.t) for p in got] == [(1, "loss", 1.5), (1, "acc", 1.5), (2, "loss", 2.0)]
    assert math.isnan(got[2].value) and tail.skipped == 2
    with open(path, "a") as fh:
        fh.write('ss": 1.5}\n{"t": 103, "step": "bad", "loss": 1}\n')
    assert [(p.step, p.value) for p in tail.poll()] == [(3, 1.5)]
    with open(path, "a") as fh:
        fh.write('{"step": 4, "loss": 1.25}')  # no newline, no t: read by drain at the end
    assert tail.poll() == []
    assert [(p.step, p.value, p.t) for p in tail.drain()] == [(4, 1.25, 0.0)]


def test_median_percentile_keeps_only_the_best_quarter() -> None:
    history = EvaluationHistory(curves={"main": {"loss": [as_curve([v] * 10) for v in (1.0, 2.0, 3.0, 4.0, 5.0)]}})
    middling = points([2.5] * 10)
    assert run_gate(MedianGate(MedianConfig()), middling, history) is None  # better than the median 3
    decision = run_gate(MedianGate(MedianConfig(percentile=25)), middling, history)
    assert decision is not None and decision.evidence["reference"] == 2.0 and "best-25% mark" in decision.reason
