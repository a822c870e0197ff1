"""The run-wide views: the overview (score over trials and time, counts, the champion, spend, evaluation time, time
saved by gates), the lineage tree with its layout and the path to the champion, and the comparison of several runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evoforge.dashboard.queries import best_so_far, direction_of, improvements, llm_usage, trial_summaries
from evoforge.dashboard.sources import RunSource
from evoforge.views import _spend_by, seed_and_gain


def overview(source: RunSource) -> dict[str, Any]:
    """Everything the overview page draws, for one run."""
    with source.record() as record:
        info = record.run_info()
        direction = direction_of(record)
        counts = record.counts()
        best = record.best(direction)
        champion = champion_of(record)
        first = record.trials(limit=1)
        savings = record.savings()
        calls = llm_usage(record)
        stopped = (record.load_state("stopped") or {}).get("reason")
        trials = trial_summaries(record)
    return {
        "run": source.key, "label": source.label, "task": info.task_name, "direction": direction.value,
        "started_at": info.created_at.isoformat(), "stopping": info.stopping, "stopped_because": stopped,
        "counts": counts, "total": sum(counts.values()),
        "best_score": best.score if best else None, "best_trial": best.id if best else None,
        "champion": champion,
        **seed_and_gain(first[0] if first else None, best, direction),
        "evaluation_seconds": savings["evaluation_seconds"], "seconds_saved": savings["seconds_saved"],
        "saved_by_gate": savings["saved_by_gate"], "stopped_by_gate": savings["stopped_by_gate"],
        "llm_calls": len(calls), "llm_tokens_in": sum(c.tokens_in for c in calls),
        "llm_tokens_out": sum(c.tokens_out for c in calls),
        "llm_cost_usd": round(sum(c.cost_usd for c in calls), 6), "spend_by_model": _spend_by(calls, "model"),
        "trials": trials, "best_so_far": best_so_far(trials, direction),
    }


def champion_of(record: Any) -> dict[str, Any] | None:
    """The run's champion (the last trial crowned by the mean-minus-stderr rule) with its mean ± stderr, or None
    (no champion yet, or a record from before champions were kept)."""
    decide = getattr(record, "champion", None)
    champion = decide() if decide is not None else None
    if champion is None:
        return None
    return {"trial": champion.trial_id, "mean": champion.mean, "stderr": champion.stderr,
            "evaluations": champion.evaluations, "reason": champion.reason}


def tree_layout(nodes: Sequence[dict[str, Any]]) -> dict[int, tuple[float, int]]:
    """(x, depth) of each node of the parent → child forest: leaves take consecutive x slots in depth-first order,
    a parent sits over the middle of its children. Iterative, so a 2,000-deep chain is fine."""
    ids = {n["id"] for n in nodes}
    children: dict[int | None, list[int]] = {}
    for n in nodes:
        parent = n["parents"][0] if n["parents"] and n["parents"][0] in ids else None
        children.setdefault(parent, []).append(n["id"])
    place: dict[int, tuple[float, int]] = {}
    next_x = 0.0
    stack: list[tuple[int, int, bool]] = [(root, 0, False) for root in reversed(children.get(None, []))]
    while stack:
        node, depth, done = stack.pop()
        kids = children.get(node, [])
        if done or not kids:
            if kids:
                xs = [place[k][0] for k in kids]
                place[node] = ((xs[0] + xs[-1]) / 2, depth)
            else:
                place[node] = (next_x, depth)
                next_x += 1.0
            continue
        stack.append((node, depth, True))
        stack.extend((k, depth + 1, False) for k in reversed(kids))
    return place


def best_path(nodes: Sequence[dict[str, Any]], best_id: int | None) -> list[int]:
    """The ids from the root down to the best trial, following each trial's first parent."""
    by_id = {n["id"]: n for n in nodes}
    path: list[int] = []
    current = best_id
    while current is not None and current in by_id and current not in path:
        path.append(current)
        parents = by_id[current]["parents"]
        current = parents[0] if parents else None
    return path[::-1]


def lineage(source: RunSource) -> dict[str, Any]:
    """Every trial as a node (status, score, name, x, depth, parent) and the best path, for the lineage tree."""
    with source.record() as record:
        direction = direction_of(record)
        best = record.best(direction)
        champion = champion_of(record)
        trials = trial_summaries(record)
    place = tree_layout(trials)
    title = champion["trial"] if champion else (best.id if best else None)
    nodes = [{"id": n["id"], "parent": n["parents"][0] if n["parents"] else None, "status": n["status"],
              "score": n["score"], "name": n["name"], "x": place[n["id"]][0], "depth": place[n["id"]][1]}
             for n in trials]
    return {"run": source.key, "nodes": nodes, "best_trial": title, "best_path": best_path(trials, title)}


def compare(sources: Sequence[RunSource]) -> dict[str, Any]:
    """Best-so-far curves of several runs on one axis, and each run's cost per improvement."""
    runs = []
    for source in sources:
        with source.record() as record:
            info = record.run_info()
            direction = direction_of(record)
            trials = trial_summaries(record)
            calls = llm_usage(record)
        curve = best_so_far(trials, direction)
        moves = improvements(curve)
        cost = round(sum(c.cost_usd for c in calls), 6)
        eval_s = sum(t["seconds"] for t in trials)
        runs.append({
            "run": source.key, "label": source.label, "task": info.task_name, "direction": direction.value,
            "trials": len(trials), "best": curve[-1]["best"] if curve else None, "improvements": moves,
            "llm_cost_usd": cost, "cost_per_improvement_usd": round(cost / moves, 6) if moves else None,
            "evaluation_seconds": round(eval_s, 3),
            "eval_seconds_per_improvement": round(eval_s / moves, 3) if moves else None,
            "curve": [{"trial": p["trial"], "best": p["best"]} for p in curve],
        })
    return {"runs": runs}
