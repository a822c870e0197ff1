"""The model ensemble's bandit: traffic moves to the arm whose children improve (simulated, and in a full run with
two fake models), cost-awareness, weights, and state that survives a resume."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
from fake_llm import FakeLLM
from taskfactory import make_task

import evoforge
import evoforge.runs
from evoforge.config import BanditSettings, RunSettings
from evoforge.llm import Arm, Ensemble, improvement
from evoforge.llm.bench import Bench
from evoforge.memory.record import Record
from evoforge.models import Direction, Trial, TrialStatus
from evoforge.research import LLMProposer, make_proposer

ARMS = [Arm("fake/bad", 0.7), Arm("fake/good", 0.7)]


def simulate(ensemble: Ensemble, reward: dict[str, float], steps: int, seed: int = 0,
             cost: dict[str, float] | None = None, trials: list[tuple[Trial, float]] | None = None) -> list[str]:
    """Choose and observe `steps` times as the loop does (the pick's facts on a trial the record writes, finished
    at once); an arm improves with probability `reward[model]` (reward 1, else -0.5). `trials` collects them."""
    rng = random.Random(seed)
    chosen = []
    for _ in range(steps):
        arm = ensemble.choose()
        facts = {**ensemble.facts(arm), "cost_usd": (cost or {}).get(arm.model, 0.0)}
        gain = 1.0 if rng.random() < reward[arm.model] else -0.5
        trial = Trial(id=len(trials or ()) + 1, status=TrialStatus.SUCCEEDED, model=arm.model, facts=facts)
        ensemble.observe(trial, None, gain)
        if trials is not None:
            trials.append((trial, gain))
        chosen.append(arm.model)
    return chosen


@pytest.mark.parametrize("policy", ["ucb1", "thompson"])
def test_bandit_moves_traffic_to_the_arm_that_improves(policy: str) -> None:
    ensemble = Ensemble(ARMS, bandit=BanditSettings(policy=policy), seed=1)
    chosen = simulate(ensemble, {"fake/good": 0.6, "fake/bad": 0.1}, 300)
    late = chosen[150:]
    assert late.count("fake/good") / len(late) >= 0.8
    summary = {row["model"]: row for row in ensemble.summary()}
    assert summary["fake/good"]["pulls"] + summary["fake/bad"]["pulls"] == 300
    assert summary["fake/good"]["mean_reward"] > summary["fake/bad"]["mean_reward"]
    assert summary["fake/bad"]["chosen"] >= 2  # it was explored, not starved from the start


def test_cost_aware_prefers_the_cheaper_of_equally_good_arms() -> None:
    rewards = {"fake/good": 0.5, "fake/bad": 0.5}
    prices = {"fake/good": 0.001, "fake/bad": 0.05}  # "bad" is just 50x dearer here
    plain = simulate(Ensemble(ARMS, bandit=BanditSettings(policy="thompson"), seed=2), rewards, 300, cost=prices)
    aware_ensemble = Ensemble(ARMS, bandit=BanditSettings(policy="thompson", cost_aware=True), seed=2)
    aware = simulate(aware_ensemble, rewards, 300, cost=prices)
    assert aware[100:].count("fake/good") / 200 >= 0.9
    assert aware[100:].count("fake/good") > plain[100:].count("fake/good")
    totals = {row["model"]: row["total_cost_usd"] for row in aware_ensemble.summary()}
    assert totals["fake/bad"] == pytest.approx(0.05 * aware.count("fake/bad"))


def test_fixed_policy_follows_weights_and_untried_arms_go_first() -> None:
    weighted = [Arm("a", 0.5, weight=3.0), Arm("b", 0.5, weight=1.0)]
    chosen = simulate(Ensemble(weighted, bandit=BanditSettings(policy="fixed"), seed=3), {"a": 0, "b": 0}, 400)
    assert 0.65 <= chosen.count("a") / 400 <= 0.85
    ucb = Ensemble([Arm("a", 0.2), Arm("a", 1.0), Arm("b", 0.7, weight=2.0)], bandit=BanditSettings(policy="ucb1"))
    firsts = [ucb.choose().key for _ in range(3)]  # none observed yet: in-flight choices spread over untried arms
    assert firsts == ["b@0.7", "a@0.2", "a@1"]


def test_state_rebuilt_from_the_trials_continues_the_same_choices() -> None:
    settings = BanditSettings(policy="thompson", cost_aware=True)
    reward = {"fake/good": 0.4, "fake/bad": 0.3}
    straight = Ensemble(ARMS, bandit=settings, seed=9)
    whole = simulate(straight, reward, 40, seed=5) + simulate(straight, reward, 40, seed=6)
    first, trials = Ensemble(ARMS, bandit=settings, seed=9), []
    head = simulate(first, reward, 40, seed=5, trials=trials)
    resumed = Ensemble(ARMS, bandit=settings, seed=9)
    resumed.rebuild(trials)  # what a resumed run does with the record's trials
    assert resumed.state() == first.state()
    assert head + simulate(resumed, reward, 40, seed=6) == whole
    assert resumed.summary() == straight.summary()
    grown = Ensemble([*ARMS, Arm("fake/new", 0.7)], bandit=settings, seed=9)
    grown.rebuild(trials)  # a model added before the resume starts fresh; the others keep their statistics
    assert [row["pulls"] for row in grown.summary()] == [*[row["pulls"] for row in first.summary()], 0]


def test_trials_map_to_arms_by_model_and_nearest_temperature() -> None:
    ensemble = Ensemble([Arm("m", 0.2), Arm("m", 1.2), Arm("n", 0.7)])
    assert ensemble.key_for("m", 0.2) == "m@0.2" and ensemble.key_for("m", 1.0) == "m@1.2"  # 1.2 clamped to 1.0
    assert ensemble.key_for("m", None) == "m@0.2" and ensemble.key_for("other", 0.7) is None
    gone = Trial(id=1, status=TrialStatus.SUCCEEDED, model="gone", facts={"arm": "gone@0.5"})
    ensemble.observe(gone, None, 1.0)  # an arm configured no more: ignored
    older = Trial(id=2, status=TrialStatus.SUCCEEDED, model="m")  # a trial recorded before facts: by its model
    ensemble.observe(older, None, 1.0)
    assert [row["pulls"] for row in ensemble.summary()] == [1, 0, 0]


def test_a_pick_that_proposed_no_trial_is_released() -> None:
    ensemble = Ensemble([Arm("a", 0.5), Arm("b", 0.5)], bandit=BanditSettings(policy="ucb1"), seed=1)
    arm = ensemble.choose()
    assert ensemble.turn() == 1 and ensemble.pending()[arm.key] == 1
    ensemble.release(arm)  # no model could be reached: no trial carries this pick
    assert ensemble.turn() == 0 and ensemble.state() == Ensemble([Arm("a", 0.5), Arm("b", 0.5)]).state()


@pytest.mark.parametrize("policy", ["fixed", "ucb1", "thompson"])
def test_the_one_model_not_benched_is_chosen_and_counted(policy: str) -> None:
    ensemble = Ensemble([Arm("a", 0.5), Arm("b", 0.5, weight=3.0)], bandit=BanditSettings(policy=policy), seed=4,
                        bench=Bench(1, 600.0))
    ensemble.bench.failure("b")  # "b" benched: "a" is the only choice
    picks = [ensemble.choose().key for _ in range(3)]
    assert picks == ["a@0.5"] * 3 and ensemble.turn() == 3 and ensemble.pending()["a@0.5"] == 3


def test_improvement_is_signed_by_direction() -> None:
    assert improvement(3.0, 1.0, Direction.MAXIMIZE) == 2.0
    assert improvement(3.0, 1.0, Direction.MINIMIZE) == -2.0
    assert improvement(None, 1.0, Direction.MAXIMIZE) == 0.0


# ---- a full run with two fake models ---------------------------------------------------------------------------

SCORE = re.compile(r"# Current program \([^)]*score = (-?[0-9.e+-]+)\)")


def answer(body: dict[str, Any], counter: list[int] = [0]) -> str:  # noqa: B006 - a call counter on purpose
    """fake/good moves x halfway to 3 (always better; `+ 0 * n` keeps two answers for one parent distinct programs);
    fake/bad writes a program that crashes."""
    counter[0] += 1
    prompt = body["messages"][-1]["content"]
    if body["model"] == "bad":
        return "NAME: break it\nMOTIVATION: m\n<<<<<<< SEARCH\n# knob\n=======\n# knob\nx = y\n>>>>>>> REPLACE\n"
    found = SCORE.search(prompt)
    assert found, prompt[:300]
    step = math.sqrt(-float(found.group(1))) / 2  # score = -(x-3)^2 and x < 3
    edit = f"# knob\nx = x + {step!r} + 0 * {counter[0]}"
    return f"NAME: halfway\nMOTIVATION: m\n<<<<<<< SEARCH\n# knob\n=======\n{edit}\n>>>>>>> REPLACE\n"


def test_full_run_routes_proposals_to_the_model_whose_children_improve(
    tmp_path: Path, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_llm.set_handler(answer)
    url = fake_llm.base_url
    task = make_task(tmp_path / "task", extra_yaml=(
        "analysis: {novelty_threshold: 1.0}\n"  # only exact repeats count as duplicates here
        f"llm:\n  max_retries: 0\n  bandit: {{policy: thompson}}\n  models:\n"
        f"    - {{name: fake/good, base_url: '{url}', price_in: 1.0, price_out: 2.0}}\n"
        f"    - {{name: fake/bad, base_url: '{url}'}}\n"
    ))
    holder: dict[str, LLMProposer] = {}  # the loop feeds each child's reward to the proposer it was given

    def capture(*args: Any, **kwargs: Any) -> Any:
        holder["proposer"] = proposer = make_proposer(*args, **kwargs)
        return proposer

    monkeypatch.setattr(evoforge.runs, "make_proposer", capture)
    run_dir = tmp_path / "run"
    summary = evoforge.run(task, run_dir=run_dir, settings=RunSettings(trials=10, concurrency=1, prefetch=0, seed=4))
    assert summary.proposer == "llm" and summary.best is not None and summary.best.model == "fake/good"
    with Record.for_run_dir(run_dir) as record:
        models = [t.model for t in record.trials() if t.model]
        calls = [c for c in record.llm_calls() if c.role in ("researcher", "repair")]
    assert len(models) == 9 and sorted(models[:2]) == ["fake/bad", "fake/good"]  # each tried once first
    assert models.count("fake/good") >= 6 and models[-4:].count("fake/good") >= 3
    assert {(c.model, c.temperature) for c in calls} == {("fake/good", 0.7), ("fake/bad", 0.7)}
    assert len(calls) >= 9 and {c.trial_id for c in calls} == {t for t in range(2, 11)}
    good = [c for c in calls if c.model == "fake/good"]
    assert all(c.cost_usd > 0 and c.cost_usd == pytest.approx((c.tokens_in + c.tokens_out * 2.0) / 1e6) for c in good)
    assert all(c.cost_usd == 0 for c in calls if c.model == "fake/bad")
    rows = {row["model"]: row for row in holder["proposer"].summary()}
    good_row = rows["fake/good"]
    assert good_row["pulls"] == models.count("fake/good") and good_row["improved"] >= good_row["pulls"] - 1
    assert rows["fake/bad"]["pulls"] == models.count("fake/bad") and rows["fake/bad"]["improved"] == 0
