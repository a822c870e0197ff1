"""Stage gate: after a stage completes, decide from its score whether the trial goes on to the next stage.

Rules (every one given must hold): `min_score` (absolute bound, a maximum when minimizing), `top_quantile` q (at
least as good as the k-th best of the n past scores of that stage, k = ceil(q x n); promotes while fewer than
`min_history` past scores exist), `parent_ratio` r (>= r x the parent's stage score, or <= parent / r when
minimizing; promotes without a parent score).
"""

from __future__ import annotations

import math
from typing import Any

from evoforge.config import PromoteRule, StageConfig
from evoforge.experiment.gates._base import fmt
from evoforge.models import Direction, EvaluationHistory, GateDecision

GATE = "stage"


def check_promotion(stage: StageConfig, score: float, history: EvaluationHistory,
                    direction: Direction) -> GateDecision:
    """A "promote" or "prune" decision for a trial that completed `stage` with `score`."""
    rule = stage.promote
    if rule is None:
        return GateDecision(GATE, stage.name, "promote", f"stage '{stage.name}' has no promotion rule",
                            {"score": score})
    passed: list[str] = []
    for verdict in (_min_score(rule, score, direction), _top_quantile(rule, stage.name, score, history, direction),
                    _parent_ratio(rule, stage.name, score, history, direction)):
        if verdict is None:
            continue
        ok, text, evidence = verdict
        if not ok:
            return GateDecision(GATE, stage.name, "prune", f"stage '{stage.name}': {text}",
                                {"score": score, "value": score, **evidence})
        passed.append(text)
    return GateDecision(GATE, stage.name, "promote", f"stage '{stage.name}': " + "; ".join(passed),
                        {"score": score, "value": score})


Verdict = tuple[bool, str, dict[str, Any]] | None


def _at_least_as_good(score: float, reference: float, direction: Direction) -> bool:
    return score == reference or direction.better(score, reference)


def _min_score(rule: PromoteRule, score: float, direction: Direction) -> Verdict:
    if rule.min_score is None:
        return None
    bound = rule.min_score
    ok = _at_least_as_good(score, bound, direction)
    word = "min_score" if direction is Direction.MAXIMIZE else "min_score (a maximum when minimizing)"
    relation = ("meets" if ok else "misses") + f" {word} {fmt(bound)}"
    return ok, f"score {fmt(score)} {relation}", {"rule": "min_score", "reference": bound}


def _top_quantile(rule: PromoteRule, stage: str, score: float, history: EvaluationHistory,
                  direction: Direction) -> Verdict:
    if rule.top_quantile is None:
        return None
    q = rule.top_quantile
    past = [s for s in history.stage_scores.get(stage, []) if math.isfinite(s)]
    if len(past) < rule.min_history:
        return True, (f"top_quantile {q:g} not applied ({len(past)} past scores, min_history "
                      f"{rule.min_history})"), {"rule": "top_quantile", "reference": None, "past": len(past)}
    ranked = sorted(past, reverse=direction is Direction.MAXIMIZE)
    k = max(1, math.ceil(q * len(ranked)))
    threshold = ranked[k - 1]
    ok = _at_least_as_good(score, threshold, direction)
    where = "within" if ok else "outside"
    text = (f"score {fmt(score)} is {where} the top {q:g} of {len(past)} past scores "
            f"(needs {fmt(threshold)}, the #{k} best)")
    return ok, text, {"rule": "top_quantile", "reference": threshold, "quantile": q, "past": len(past)}


def _parent_ratio(rule: PromoteRule, stage: str, score: float, history: EvaluationHistory,
                  direction: Direction) -> Verdict:
    if rule.parent_ratio is None:
        return None
    r = rule.parent_ratio
    parent = history.parent_stage_scores.get(stage)
    if parent is None or not math.isfinite(parent):
        return True, f"parent_ratio {r:g} not applied (no parent score)", {"rule": "parent_ratio", "reference": None}
    bound = r * parent if direction is Direction.MAXIMIZE else parent / r
    ok = _at_least_as_good(score, bound, direction)
    relation = "meets" if ok else "misses"
    text = f"score {fmt(score)} {relation} parent_ratio {r:g} x parent's {fmt(parent)} (bound {fmt(bound)})"
    return ok, text, {"rule": "parent_ratio", "reference": parent, "bound": bound, "ratio": r}
