"""The record's per-trial writes as prepared SQL: each statement compiled by SQLAlchemy once per set of parameter
names, its values converted by the column types' own bind processors, and the SQL run with `exec_driver_sql` (in
the connection's transaction, with SQLAlchemy's error wrapping and cursor events): the same SQL and values as
`conn.execute(statement, values)`, without the compiled statement's execution set-up at every call, which costs
SQLAlchemy more CPU than SQLite spends running a small INSERT or UPDATE.

Only where the driver takes positional parameters (SQLite) and the statement needs nothing at execution but its
values (no RETURNING, no column default computed in Python, no expanding IN): otherwise `conn.execute`, as before.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, CursorResult, Executable
from sqlalchemy.engine import Dialect

FORMS_KEPT = 32  # sets of parameter names compiled per statement (a call site passes one; past it: `conn.execute`)
_FIXED = object()  # the key of a parameter whose value the statement fixes (a literal)
# the SQL, and per positional parameter: the key of its value (or _FIXED), its bind processor, the fixed value
_Form = tuple[str, list[tuple[Any, Callable[[Any], Any] | None, Any]]]
Values = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def _plan(statement: Executable, dialect: Dialect, keys: Sequence[str]) -> _Form | None:
    """The statement's SQL for these parameter names, and how each positional parameter is taken from a row's values
    (by its key, or a value fixed in the statement) and converted; None when the statement needs more than that."""
    if dialect.paramstyle != "qmark":
        return None
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
    if (compiled.positiontup is None or compiled.insert_prefetch or compiled.update_prefetch
            or compiled.effective_returning or compiled.literal_execute_params or compiled.post_compile_params):
        return None
    wanted = set(keys)
    plan: list[tuple[Any, Callable[[Any], Any] | None, Any]] = []
    for name in compiled.positiontup:
        bind = compiled.binds.get(name)
        if bind is None:
            return None
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.key in wanted:
            plan.append((bind.key, process, None))
        elif bind.callable is None and not bind.required:  # a value of the statement's own (a literal)
            plan.append((_FIXED, None, process(bind.value) if process else bind.value))
        else:
            return None
    return compiled.string, plan


def _parameters(plan: list[tuple[Any, Callable[[Any], Any] | None, Any]], row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple([fixed if key is _FIXED else row[key] if process is None else process(row[key])
                  for key, process, fixed in plan])


class Prepared:
    """A statement the record runs at every trial (see the module's docstring); `statement` is the SQLAlchemy one."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        # per dialect (each engine's: its JSON serializer is in the bind processors), per set of parameter names
        self._forms: weakref.WeakKeyDictionary[Dialect, dict[tuple[str, ...], _Form | None]] = (
            weakref.WeakKeyDictionary())

    def run(self, conn: Connection, values: Values) -> CursorResult[Any]:
        """`conn.execute(statement, values)`: one row's values, or several rows' (each with the same keys)."""
        return self._run(conn, values)[0]

    def new_id(self, conn: Connection, values: Mapping[str, Any]) -> int:
        """Insert one row; its new primary key."""
        result, prepared = self._run(conn, values)
        return int(result.lastrowid if prepared else result.inserted_primary_key[0])

    def _run(self, conn: Connection, values: Values) -> tuple[CursorResult[Any], bool]:
        many = not isinstance(values, Mapping)
        first = values[0] if many and values else values
        form = self._form(conn.dialect, tuple(first)) if first else None  # type: ignore[arg-type]
        if form is None:
            return conn.execute(self.statement, values), False  # type: ignore[arg-type]
        sql, plan = form
        if many:
            rows = [_parameters(plan, row) for row in values]  # type: ignore[union-attr]
            return conn.exec_driver_sql(sql, rows), True  # type: ignore[arg-type]
        return conn.exec_driver_sql(sql, _parameters(plan, values)), True  # type: ignore[arg-type]

    def _form(self, dialect: Dialect, keys: tuple[str, ...]) -> _Form | None:
        forms = self._forms.get(dialect)
        if forms is None:
            forms = self._forms.setdefault(dialect, {})
        try:
            return forms[keys]
        except KeyError:
            if len(forms) >= FORMS_KEPT:
                return None
            form = forms[keys] = _plan(self.statement, dialect, keys)
            return form
