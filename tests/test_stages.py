"""Stage promotion rules and the cascade, with a scripted in-process `launch` in place of the evaluator process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from evoforge.config import GatesConfig, MedianConfig, PromoteRule, StageConfig
from evoforge.experiment.gates import check_promotion
from evoforge.experiment.stages import Cascade, StageRun
from evoforge.models import Direction, EvaluationHistory, StageResult, TrialStatus

MAX = Direction.MAXIMIZE
MIN = Direction.MINIMIZE


def stage(name: str = "smoke", **rule: float) -> StageConfig:
    return StageConfig(name=name, timeout_s=10, promote=PromoteRule(**rule) if rule else None)


def test_min_score_is_a_floor_when_maximizing_and_a_ceiling_when_minimizing() -> None:
    ok = check_promotion(stage(min_score=0.5), 0.5, EvaluationHistory(), MAX)
    assert ok.action == "promote" and ok.gate == "stage" and ok.stage == "smoke"
    no = check_promotion(stage(min_score=0.5), 0.4, EvaluationHistory(), MAX)
    assert no.action == "prune" and no.evidence["rule"] == "min_score" and no.evidence["reference"] == 0.5
    assert no.reason == "stage 'smoke': score 0.4 misses min_score 0.5"
    assert check_promotion(stage(min_score=0.5), 0.4, EvaluationHistory(), MIN).action == "promote"
    assert check_promotion(stage(min_score=0.5), 0.6, EvaluationHistory(), MIN).action == "prune"


def test_top_quantile_needs_history_then_ranks_against_it() -> None:
    short = EvaluationHistory(stage_scores={"smoke": [1.0, 2.0]})
    early = check_promotion(stage(top_quantile=0.5), -100.0, short, MAX)
    assert early.action == "promote" and "min_history 3" in early.reason
    history = EvaluationHistory(stage_scores={"smoke": [1.0, 2.0, 3.0, 4.0], "other": [100.0] * 5})
    assert check_promotion(stage(top_quantile=0.5), 3.0, history, MAX).action == "promote"
    cut = check_promotion(stage(top_quantile=0.5), 2.5, history, MAX)
    assert cut.action == "prune" and cut.evidence["reference"] == 3.0 and cut.evidence["past"] == 4
    assert "outside the top 0.5 of 4 past scores" in cut.reason
    assert check_promotion(stage(top_quantile=0.5), 2.0, history, MIN).action == "promote"
    assert check_promotion(stage(top_quantile=0.5), 2.5, history, MIN).action == "prune"
    assert check_promotion(stage(top_quantile=0.25), 4.0, history, MAX).action == "promote"
    assert check_promotion(stage(top_quantile=0.25), 3.9, history, MAX).action == "prune"


def test_parent_ratio_follows_direction_and_needs_a_parent_score() -> None:
    history = EvaluationHistory(parent_stage_scores={"smoke": 2.0})
    assert check_promotion(stage(parent_ratio=0.9), 1.8, history, MAX).action == "promote"
    low = check_promotion(stage(parent_ratio=0.9), 1.7, history, MAX)
    assert low.action == "prune" and low.evidence["bound"] == pytest.approx(1.8)
    assert check_promotion(stage(parent_ratio=0.8), 2.5, history, MIN).action == "promote"  # <= 2 / 0.8
    assert check_promotion(stage(parent_ratio=0.8), 2.6, history, MIN).action == "prune"
    orphan = check_promotion(stage(parent_ratio=0.9), -5.0, EvaluationHistory(), MAX)
    assert orphan.action == "promote" and "no parent score" in orphan.reason


def test_every_rule_given_must_hold() -> None:
    history = EvaluationHistory(parent_stage_scores={"smoke": 10.0})
    decision = check_promotion(stage(min_score=0.0, parent_ratio=0.5), 4.0, history, MAX)
    assert decision.action == "prune" and decision.evidence["rule"] == "parent_ratio"
    both = check_promotion(stage(min_score=0.0, parent_ratio=0.5), 6.0, history, MAX)
    assert both.action == "promote" and "min_score" in both.reason and "parent_ratio" in both.reason
    assert check_promotion(stage(), 6.0, history, MAX).action == "promote"


# ---- the cascade, with a scripted launch ---------------------------------------------------------------------

Script = dict[str, tuple[float | None, list[float]]]  # stage -> (final score or None for a failure, losses)


def scripted(tmp_path: Path, script: Script, launched: list[str], delay: float = 0.01
             ) -> tuple[Callable[..., object], Callable[[str], Path]]:
    """A launch that writes the stage's losses as telemetry (one per `delay`) and honours the stop event."""

    def telemetry_path(name: str) -> Path:
        return tmp_path / f"telemetry.{name}.jsonl"

    async def launch(cfg: StageConfig, stop: asyncio.Event) -> StageRun:
        launched.append(cfg.name)
        score, losses = script[cfg.name]
        start = time.monotonic()
        for step, loss in enumerate(losses):
            if stop.is_set():
                seconds = time.monotonic() - start
                return StageRun(StageResult(cfg.name, TrialStatus.PRUNED, seconds=seconds))
            with open(telemetry_path(cfg.name), "a") as fh:
                fh.write(json.dumps({"t": time.time(), "step": step, "loss": loss}) + "\n")
            await asyncio.sleep(delay)
        if score is None:
            return StageRun(StageResult(cfg.name, TrialStatus.FAILED, seconds=1.0, error_class="exit:1",
                                        error_message="evaluator exited with code 1"))
        return StageRun(StageResult(cfg.name, TrialStatus.SUCCEEDED, score=score, metrics={"score": score},
                                    seconds=1.0), stdout_tail=f"{cfg.name} done")

    return launch, telemetry_path


def cascade(tmp_path: Path, stages: list[StageConfig], script: Script, launched: list[str],
            history: EvaluationHistory | None = None, gates: GatesConfig | None = None) -> Cascade:
    launch, telemetry_path = scripted(tmp_path, script, launched)
    return Cascade(stages=stages, gates=gates or GatesConfig(), direction=MAX, history=history or EvaluationHistory(),
                   launch=launch, telemetry_path=telemetry_path, poll_s=0.02)  # type: ignore[arg-type]


def test_a_failed_promotion_prunes_after_stage_one(tmp_path: Path) -> None:
    launched: list[str] = []
    stages = [stage("smoke", min_score=0.5), StageConfig(name="full", timeout_s=10)]
    history = EvaluationHistory(full_seconds=[10.0, 20.0])
    out = asyncio.run(cascade(tmp_path, stages, {"smoke": (0.2, [1.0, 0.9]), "full": (9.0, [])}, launched,
                              history).run())
    assert launched == ["smoke"]
    assert out.status is TrialStatus.PRUNED and out.score is None and out.metrics == {}
    assert out.error_class == "pruned:stage"
    assert out.error_message == "stage 'smoke': score 0.2 misses min_score 0.5"
    assert [(s.name, s.status, s.score) for s in out.stages] == [("smoke", TrialStatus.SUCCEEDED, 0.2)]
    assert out.seconds == 1.0 and out.seconds_saved == pytest.approx(14.0)
    assert [(d.gate, d.action) for d in out.decisions] == [("stage", "prune")]
    assert [(p.stage, p.step, p.value) for p in out.telemetry] == [("smoke", 0, 1.0), ("smoke", 1, 0.9)]


def test_promoted_stages_run_in_order_and_the_last_gives_the_score(tmp_path: Path) -> None:
    launched: list[str] = []
    stages = [stage("smoke", min_score=0.0), stage("short", top_quantile=0.5), StageConfig(name="full", timeout_s=9)]
    script: Script = {"smoke": (0.1, [2.0]), "short": (0.5, [1.5]), "full": (0.9, [1.0, 0.8])}
    out = asyncio.run(cascade(tmp_path, stages, script, launched).run())
    assert launched == ["smoke", "short", "full"]
    assert out.status is TrialStatus.SUCCEEDED and out.score == 0.9 and out.metrics == {"score": 0.9}
    assert [s.score for s in out.stages] == [0.1, 0.5, 0.9] and out.seconds == 3.0 and out.seconds_saved == 0
    assert [(d.stage, d.action) for d in out.decisions] == [("smoke", "promote"), ("short", "promote")]
    assert out.stdout_tail == "full done" and {p.stage for p in out.telemetry} == {"smoke", "short", "full"}


def test_a_failing_stage_ends_the_cascade_as_failed(tmp_path: Path) -> None:
    launched: list[str] = []
    stages = [StageConfig(name="smoke", timeout_s=5), StageConfig(name="full", timeout_s=5)]
    out = asyncio.run(cascade(tmp_path, stages, {"smoke": (None, [1.0]), "full": (1.0, [])}, launched).run())
    assert launched == ["smoke"] and out.status is TrialStatus.FAILED and out.error_class == "exit:1"
    assert out.seconds_saved == 0.0


def test_a_curve_gate_stops_the_running_stage(tmp_path: Path) -> None:
    launched: list[str] = []
    good = tuple((s, 1.0, 0.0) for s in range(200))
    history = EvaluationHistory(curves={"full": {"loss": [good, good, good]}}, full_seconds=[30.0])
    gates = GatesConfig(median=MedianConfig(warmup_steps=3, stages=["full"]))
    stages = [StageConfig(name="smoke", timeout_s=5), StageConfig(name="full", timeout_s=5)]
    script: Script = {"smoke": (0.3, [5.0] * 10), "full": (0.9, [5.0] * 200)}  # smoke is not watched
    out = asyncio.run(cascade(tmp_path, stages, script, launched, history, gates).run())
    assert launched == ["smoke", "full"] and out.status is TrialStatus.PRUNED
    assert out.error_class == "pruned:median" and out.error_message is not None
    assert out.error_message.startswith("stage 'full': loss best 5 at step 3 is worse than the median 1")
    full = out.stages[1]
    assert full.status is TrialStatus.PRUNED and full.score is None and full.seconds < 1.0
    assert out.stages[0].score == 0.3 and out.score is None
    assert max(p.step or 0 for p in out.telemetry if p.stage == "full") < 100  # stopped long before step 199
    prune = [d for d in out.decisions if d.action == "prune"]
    assert len(prune) == 1 and prune[0].evidence["step"] == 3 and prune[0].evidence["reference"] == 1.0
    assert out.seconds_saved == pytest.approx(30.0 - out.seconds)


def test_a_stage_runs_in_the_cascades_own_task(tmp_path: Path) -> None:
    """No task of its own per stage (and no hop through the event loop before it starts): the polls are timers."""
    tasks: list[asyncio.Task[object] | None] = []
    launch, telemetry_path = scripted(tmp_path, {"smoke": (1.0, [1.0, 0.5, 0.2])}, [], delay=0.03)

    async def noted(cfg: StageConfig, stop: asyncio.Event) -> StageRun:
        tasks.append(asyncio.current_task())
        return await launch(cfg, stop)  # type: ignore[misc]

    async def scenario() -> tuple[object, asyncio.Task[object] | None]:
        run = Cascade(stages=[StageConfig(name="smoke", timeout_s=5)], gates=GatesConfig(), direction=MAX,
                      history=EvaluationHistory(), launch=noted, telemetry_path=telemetry_path, poll_s=0.02)
        return await run.run(), asyncio.current_task()

    out, task = asyncio.run(scenario())
    assert tasks == [task]
    assert out.status is TrialStatus.SUCCEEDED  # type: ignore[attr-defined]
    assert [p.value for p in out.telemetry] == [1.0, 0.5, 0.2]  # type: ignore[attr-defined]


def test_a_poll_that_fails_stops_the_stage_and_raises_once_it_has_ended(tmp_path: Path) -> None:
    ended: list[bool] = []
    launch, _ = scripted(tmp_path, {"smoke": (1.0, [1.0] * 500)}, [], delay=0.01)

    async def watched(cfg: StageConfig, stop: asyncio.Event) -> StageRun:
        telemetry.mkdir()  # a poll's open raises IsADirectoryError, not the FileNotFoundError of a file not yet there
        run = await launch(cfg, stop)  # type: ignore[misc]
        ended.append(stop.is_set())
        return run

    telemetry = tmp_path / "not-a-file"
    run = Cascade(stages=[StageConfig(name="smoke", timeout_s=5)], gates=GatesConfig(), direction=MAX,
                  history=EvaluationHistory(), launch=watched, telemetry_path=lambda name: telemetry, poll_s=0.02)
    with pytest.raises(IsADirectoryError):
        asyncio.run(run.run())
    assert ended == [True]  # the stage was stopped (long before its 500 steps), then the error came through
