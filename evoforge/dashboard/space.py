"""The search-space view: the MAP-Elites grid (each cell's elite, rebuilt from the trials and the task's feature
bins) and the islands of one run: which island holds which trials and its best, and the migrations between them
(from the trials' facts; a record made before facts shows the migrations its sampler state kept)."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from evoforge.dashboard.queries import direction_of, trial_facts
from evoforge.dashboard.sources import RunSource
from evoforge.memory import tables as t
from evoforge.models import TrialStatus


def _feature(name: str, metrics: dict[str, Any], code: str) -> float | None:
    if name == "code_length":
        return float(len(code))
    if name == "code_lines":
        return float(len(code.splitlines()))
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _bin(value: float, spec: dict[str, Any]) -> int:
    lo, hi, bins = float(spec.get("min", 0.0)), float(spec.get("max", 1.0)), int(spec.get("bins", 10))
    return min(bins - 1, max(0, math.floor((value - lo) / (hi - lo) * bins)))


def search_space(source: RunSource) -> dict[str, Any]:
    """The grid of elites over the task's MAP-Elites features (every scored trial placed), and the islands."""
    with source.record() as record:
        info = record.run_info()
        direction = direction_of(record)
        sampler_state = record.load_state("sampler") or {}
        c = t.trials.c
        query = select(c.id, c.score, c.metrics, c.code).where(
            c.run_id == record.run_id, c.status == TrialStatus.SUCCEEDED.value, c.score.is_not(None),
            c.suspect.is_(False), c.reused_from.is_(None)).order_by(c.id)
        with record._engine.connect() as conn:  # read through the record's own engine
            rows = conn.execute(query).all()
            parents = {r.id: list(r.parent_ids or ())
                       for r in conn.execute(select(c.id, c.parent_ids).where(c.run_id == record.run_id)).all()}
        facts = trial_facts(record)
    research = info.config.get("task_config", {}).get("research", {})
    sampler = info.config.get("settings", {}).get("sampler") or research.get("sampler", "ucb1")
    specs = research.get("map_elites", {}).get("features") or [{"name": "code_length", "bins": 10, "min": 0,
                                                                 "max": 20000}]
    elites: dict[tuple[int, ...], dict[str, Any]] = {}
    placed = 0
    for row in rows:
        values = [_feature(s["name"], dict(row.metrics or {}), row.code) for s in specs]
        if any(v is None for v in values):
            continue
        placed += 1
        cell = tuple(_bin(v, s) for v, s in zip(values, specs, strict=True))  # type: ignore[arg-type]
        held = elites.setdefault(cell, {"cell": list(cell), "trial": row.id, "score": row.score, "count": 0})
        if direction.better(row.score, held["score"]):
            held.update(trial=row.id, score=row.score)
        held["count"] += 1
    count = int(research.get("islands", {}).get("count", 1))
    scored = {row.id: row.score for row in rows}
    return {
        "run": source.key, "sampler": sampler, "direction": direction.value,
        "features": [{"name": s["name"], "bins": s.get("bins", 10), "min": s.get("min", 0.0),
                      "max": s.get("max", 1.0)} for s in specs],
        "cells": sorted(elites.values(), key=lambda e: e["cell"]), "placed": placed,
        "islands": _islands(count, parents, facts, scored, direction, sampler_state),
    }


def _islands(count: int, parents: dict[int, list[int]], facts: dict[int, dict[str, Any]],
             scored: dict[int, float], direction: Any, sampler_state: dict[str, Any]) -> dict[str, Any]:
    """Each island's members (a child joins the island its parent was picked on, its `island` fact; roots are on
    every island), its best scored member, and the ring migrations (each a `migration` fact)."""
    home: dict[int, int | None] = {}
    for trial_id in sorted(parents):
        island = facts.get(trial_id, {}).get("island")
        if not parents[trial_id]:
            home[trial_id] = None
        elif isinstance(island, int) and 0 <= island < count:
            home[trial_id] = island
        else:
            home[trial_id] = home.get(parents[trial_id][0])
    events: list[dict[str, Any]] = []
    numbers: set[Any] = set()
    for trial_id in sorted(facts):  # a migration is carried by the pick that made it, and by later ones until recorded
        migration = facts[trial_id].get("migration")
        if isinstance(migration, dict) and migration.get("number") not in numbers:
            numbers.add(migration.get("number"))
            events += [{"after": migration.get("after"), "source": src, "target": dst, "trials": list(ids)}
                       for src, dst, ids in migration.get("moves", [])]
    if not facts:  # a record made before facts: the sampler's saved state kept the migrations
        state = sampler_state.get("islands", {})
        events = [{"after": e[0], "source": e[1], "target": e[2], "trials": e[3]} for e in state.get("events", [])]
    migrants: list[set[int]] = [set() for _ in range(count)]
    for event in events:
        if 0 <= int(event["target"]) < count:
            migrants[int(event["target"])].update(int(i) for i in event["trials"])
    islands = []
    for island in range(count):
        members = [i for i, h in home.items() if h == island or h is None] + sorted(migrants[island])
        best = None
        for trial_id in members:
            if trial_id in scored and (best is None or direction.better(scored[trial_id], scored[best])):
                best = trial_id
        islands.append({"island": island, "members": len(set(members)), "best_trial": best,
                        "best_score": scored.get(best) if best is not None else None,
                        "migrants": sorted(migrants[island])})
    return {"count": count, "migrations": len({e["after"] for e in events}), "events": events, "islands": islands,
            "from_facts": bool(facts)}
