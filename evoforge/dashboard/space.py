"""The search-space view: the MAP-Elites grid (each cell's elite, rebuilt from the trials and the task's feature
bins) and the islands (their number, the migrations the sampler recorded) of one run."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select

from evoforge.dashboard.queries import direction_of
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
            c.status == TrialStatus.SUCCEEDED.value, c.score.is_not(None), c.suspect.is_(False),
            c.reused_from.is_(None)).order_by(c.id)
        with record._engine.connect() as conn:  # read through the record's own engine
            rows = conn.execute(query).all()
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
    islands = sampler_state.get("islands", {})
    events = [{"after": e[0], "source": e[1], "target": e[2], "trials": e[3]} for e in islands.get("events", [])]
    return {
        "run": source.key, "sampler": sampler, "direction": direction.value,
        "features": [{"name": s["name"], "bins": s.get("bins", 10), "min": s.get("min", 0.0),
                      "max": s.get("max", 1.0)} for s in specs],
        "cells": sorted(elites.values(), key=lambda e: e["cell"]), "placed": placed,
        "islands": {"count": int(research.get("islands", {}).get("count", 1)),
                    "migrations": int(islands.get("migrations", 0)), "events": events,
                    "migrants": islands.get("migrants", [])},
    }
