"""Budgets stop the loop on committed spend (spent + what the work in flight will spend), naming the budget."""

from __future__ import annotations

from evoforge.budget import Budgets, BudgetTracker, Spend
from evoforge.models import LLMCall


def _call(cost: float, tokens: int = 100) -> LLMCall:
    return LLMCall(role="researcher", model="m", prompt="p", response="r", tokens_in=tokens, tokens_out=0,
                   cost_usd=cost)


def test_dollar_budget_counts_calls_in_flight() -> None:
    tracker = BudgetTracker(Budgets(usd=1.0))
    assert tracker.stop_reason(in_flight=0) is None  # nothing known yet: start
    tracker.add_calls([_call(0.2)], proposal=True)
    assert tracker.stop_reason(in_flight=2) is None  # 0.2 spent + 3 × 0.2 committed = 0.8 < 1.0
    reason = tracker.stop_reason(in_flight=3)  # 0.2 + 4 × 0.2 = 1.0: the cap would be reached
    assert reason is not None and reason.startswith("dollar budget")


def test_token_eval_and_wall_budgets() -> None:
    tracker = BudgetTracker(Budgets(tokens=1000))
    tracker.add_calls([_call(0.0, tokens=400)], proposal=True)
    assert tracker.stop_reason(in_flight=0) is None
    assert "token budget" in (tracker.stop_reason(in_flight=1) or "")
    evals = BudgetTracker(Budgets(eval_s=10.0))
    evals.add_evaluation(6.0)
    assert evals.stop_reason(in_flight=0, mean_eval_s=3.0) is None
    assert "evaluation budget" in (evals.stop_reason(in_flight=1, mean_eval_s=3.0) or "")
    wall = BudgetTracker(Budgets(wall_s=5.0), spend=Spend(wall_s_before=6.0))
    assert "wall-clock budget" in (wall.stop_reason(in_flight=0) or "")


def test_no_budget_never_stops() -> None:
    tracker = BudgetTracker(Budgets())
    tracker.add_calls([_call(100.0, tokens=10**9)], proposal=True)
    tracker.add_evaluation(10**9)
    assert tracker.stop_reason(in_flight=100, mean_eval_s=10.0) is None
