"""A trial's row as the frozen `Trial` the record hands out, and the rows of the unfinished trials the record wrote,
kept so a transition (mark running, finish) needs no `RETURNING` of the whole row (code, diff, JSON columns read and
decoded again at every step of every trial).

This is exact because an unfinished trial changes only by transitions, each setting the status itself: its other
fields a `Trial` shows (parents, code, facts, ... ; score, metrics, digest and the rest stay at their defaults until
it finishes, and `set_digest` refuses it) are the ones it was added with, whoever moved it since (a requeue or
another runner's adoption changes only its status, runner and lease). A row is kept only once its transaction
committed, and forgotten when the trial finishes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from evoforge.memory.tables import dumps_json
from evoforge.models import Trial, TrialStatus

OPEN_KEPT = 1024  # unfinished trials whose rows are kept (a runner holds a handful; the oldest is forgotten first)
JSON_COLUMNS = ("parent_ids", "inspiration_ids", "metrics", "facts")


def trial_from_values(trial_id: int, values: Mapping[str, Any]) -> Trial:
    return trial_from_row(SimpleNamespace(id=trial_id, **values))


def trial_from_row(row: Any) -> Trial:
    return Trial(
        id=row.id,
        status=TrialStatus(row.status),
        parent_ids=tuple(row.parent_ids or ()),
        inspiration_ids=tuple(row.inspiration_ids or ()),
        name=row.name,
        motivation=row.motivation,
        code=row.code,
        diff=row.diff,
        score=row.score,
        metrics=dict(row.metrics or {}),
        error_class=row.error_class,
        error_message=row.error_message,
        seconds=row.seconds,
        seconds_saved=row.seconds_saved,
        proposer=row.proposer,
        model=row.model,
        digest=row.digest,
        suspect=bool(row.suspect),
        reused_from=row.reused_from,
        created_at=row.created_at,
        finished_at=row.finished_at,
        facts=dict(getattr(row, "facts", None) or {}),
    )


def as_stored(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values as a read gives them back: the JSON columns through the record's JSON (tuples as lists, keys
    as strings, NaN as null); an empty one, or a list of ints (parent ids), as it is."""
    return {k: json.loads(dumps_json(v)) if k in JSON_COLUMNS and v and not _ints(v) else v
            for k, v in values.items()}


def _ints(value: Any) -> bool:
    return type(value) is list and all(type(i) is int for i in value)


class OpenRows:
    """Trial id → the column values of an unfinished trial as the record holds them (bounded)."""

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, Any]] = {}

    def get(self, trial_id: int) -> dict[str, Any] | None:
        return self._rows.get(trial_id)

    def keep(self, trial_id: int, values: Mapping[str, Any]) -> None:
        """Keep the trial's row (as stored), or forget it once the trial is finished."""
        self._rows.pop(trial_id, None)
        if TrialStatus(values["status"]).finished:
            return
        self._rows[trial_id] = {k: v for k, v in values.items() if k != "id"}
        if len(self._rows) > OPEN_KEPT:
            self._rows.pop(next(iter(self._rows)))

    def forget(self, trial_id: int) -> None:
        self._rows.pop(trial_id, None)
