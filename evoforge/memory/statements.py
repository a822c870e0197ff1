"""The statements the record runs at every trial, built once and given their values as parameters: SQLAlchemy spends
more CPU building, checking and keying a statement than SQLite spends running it (a few hundred microseconds
against a few tens), and a statement object built once is keyed once. An UPDATE built with no SET clause sets the
columns its parameters name. A fixed list of values is given as one parameter each (`one_of`), not as an
"expanding" IN whose SQL SQLAlchemy rewrites at every execution.
"""

from __future__ import annotations

from collections.abc import Collection, Set
from typing import Any

from sqlalchemy import ColumnElement, Delete, Select, Update, bindparam, exists, insert, literal, or_, select, update

from evoforge.memory import tables as t
from evoforge.memory.prepared import Prepared
from evoforge.models import TrialStatus

INSERT_TRIAL = Prepared(insert(t.trials))
INSERT_LLM_CALLS = Prepared(insert(t.llm_calls))
INSERT_ANALYSIS = Prepared(insert(t.analyses))
INSERT_KNOWLEDGE_SHOWN = Prepared(insert(t.knowledge_shown))
INSERT_STAGE_RESULTS = Prepared(insert(t.stage_results))
INSERT_TELEMETRY = Prepared(insert(t.telemetry))
INSERT_GATE_DECISIONS = Prepared(insert(t.gate_decisions))
INSERT_STATE = Prepared(insert(t.run_state))
# parameters: run_, key_, and the columns to set (value, updated_at)
UPDATE_STATE = Prepared(update(t.run_state).where(t.run_state.c.run_id == bindparam("run_"),
                                                  t.run_state.c.key == bindparam("key_")))
DELETE_ANALYSES_OF_KIND: Delete = t.analyses.delete().where(t.analyses.c.trial_id == bindparam("trial_"),
                                                            t.analyses.c.kind == bindparam("kind_"))
_REUSABLE = [s.value for s in TrialStatus if s.finished and s != TrialStatus.REJECTED]


def one_of(column: Any, values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN (?, ?, ...)`, one parameter per value: built once, its SQL never rewritten (a plain `in_(list)`
    is an expanding parameter, whose SQL SQLAlchemy rewrites at each execution)."""
    return column.in_([literal(value, column.type) for value in values])  # type: ignore[no-any-return]


def _original(c: Any) -> list[ColumnElement[bool]]:
    """Of trials' columns `c`: a finished, originally evaluated trial of run `run_` whose program has fingerprint
    `fingerprint_` (by the fingerprint's index: `run_id + 0` keeps SQLite off the run's, which would walk all the
    run's trials)."""
    return [c.fingerprint == bindparam("fingerprint_"), (c.run_id + 0) == bindparam("run_"), c.reused_from.is_(None),
            one_of(c.status, _REUSABLE), c.error_class.is_distinct_from("proposal_error")]


class TrialStatements:
    """The statements of one record's trials (its trial columns: all of them, or those an older record has)."""

    def __init__(self, columns: Collection[Any]) -> None:
        self._columns = list(columns)
        self._transitions: dict[tuple[frozenset[TrialStatus], bool, bool, bool], Update | Prepared] = {}
        c = t.trials.c
        self.fingerprint: Select[Any] = select(*self._columns).where(*_original(c)).order_by(c.id).limit(1)

    def transition(self, allowed: Set[TrialStatus], runner_checked: bool, *, returning: bool = True,
                   unless_repeat: bool = False) -> Update | Prepared:
        """UPDATE trials (the columns its parameters name) of id `trial_` whose status is in `allowed` and, when
        `runner_checked`, held by runner `runner_` or by none — and, with `unless_repeat`, while run `run_` holds
        no original evaluation of fingerprint `fingerprint_` (what `fingerprint` finds); returning the row (with
        `returning`)."""
        key = (frozenset(allowed), runner_checked, returning, unless_repeat)
        statement = self._transitions.get(key)
        if statement is None:
            c = t.trials.c
            where = [c.id == bindparam("trial_"), one_of(c.status, sorted(s.value for s in allowed))]
            if runner_checked:
                where.append(or_(c.runner.is_(None), c.runner == bindparam("runner_")))
            if unless_repeat:
                where.append(~exists().where(*_original(t.trials.alias("original").c)))
            statement = update(t.trials).where(*where)
            self._transitions[key] = statement.returning(*self._columns) if returning else Prepared(statement)
        return self._transitions[key]


__all__ = [
    "DELETE_ANALYSES_OF_KIND", "INSERT_ANALYSIS", "INSERT_GATE_DECISIONS", "INSERT_KNOWLEDGE_SHOWN", "INSERT_LLM_CALLS",
    "INSERT_STAGE_RESULTS", "INSERT_STATE", "INSERT_TELEMETRY", "INSERT_TRIAL", "UPDATE_STATE", "TrialStatements",
    "one_of",
]
