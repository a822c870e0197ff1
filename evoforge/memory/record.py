"""The Database of Record: one run's trials, LLM calls and analyses behind one interface, any SQLAlchemy URL (one
database may hold many runs: run_rows.py; several runners may work on one run: claims.py).

Every method commits before it returns (inside `batch`, the batch commits as one), so a process killed at any moment
loses no completed write. The record owns the trials: a write returns the trial as it now stands (a frozen `Trial`)
and tells the subscribers (the loop's population); a finished trial never changes (`FinishedTrialError`).
On SQLite the record runs in WAL mode, so a second process (dashboard, `evoforge status`) can read while the
loop writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from evoforge.errors import RunError
from evoforge.memory import evaluations as ev
from evoforge.memory import statements as st
from evoforge.memory import tables as t
from evoforge.memory.champion_log import ChampionLog
from evoforge.memory.claims import OPEN, ClaimLost, Claims
from evoforge.memory.history import KeptHistory
from evoforge.memory.locations import (  # noqa: F401 - re-exported: where a run folder keeps its record
    RECORD_FILE,
    make_engine,
    record_file,
    record_url,
    run_file_id,
    write_run_file,
)
from evoforge.memory.prepared import Prepared
from evoforge.memory.research_log import ResearchLog
from evoforge.memory.run_rows import RunRows
from evoforge.memory.schema import (
    RecordTooNew,
    add_missing_columns,
    create_missing_tables,
    present_columns,
    read_only_uri,
    recorded_version,
    stamp_version,
)
from evoforge.memory.tables import finite_or_none, utcnow
from evoforge.memory.trial_rows import OpenRows, as_stored, trial_from_row, trial_from_values
from evoforge.memory.upgrades import upgrade_to_4
from evoforge.models import (
    Digest,
    Direction,
    EvaluationHistory,
    Outcome,
    StageResult,
    TelemetryPoint,
    Trial,
    TrialStatus,
)
from evoforge.run_folder import RECORD_URL_FILE

DIGEST_KIND = "digest"


class FinishedTrialError(RunError):
    """A write to a trial that is finished already (succeeded, failed, pruned, rejected): it never changes."""


_OPEN = OPEN  # what may finish
_FINISHED = frozenset(s for s in TrialStatus if s.finished)  # what may get a new digest


class Record(RunRows, Claims, ResearchLog, ChampionLog):
    """One run's Database of Record. The loop sends its calls to the record's own thread (`io`); other processes may
    open the same file to read."""

    def __init__(self, url: str, *, read_only: bool = False, run_id: int | None = None) -> None:
        """Open the record at `url`, to work on run `run_id` (None: the one `create_run` adds, else the record's
        first); `read_only` (for commands that only read) makes no table and writes nothing (on SQLite the
        connection itself is read-only)."""
        self.url = url
        self.read_only = read_only
        self._engine = make_engine(url, read_only=read_only)
        self._shown = self._engine.url.render_as_string(hide_password=True)
        self._run_id: int | None = run_id
        self._open_transactions()
        self._analysis_texts = {}
        self._history: KeptHistory | None = None
        self._open_rows = OpenRows()  # the rows of unfinished trials this record wrote (trial_rows.py)
        self._trial_columns = list(t.trials.c)
        self._run_scoped = {t.agendas.name, t.llm_calls.name}  # tables with a run_id (version 4 on)
        self._from_row = trial_from_row
        self._statements = st.TrialStatements(self._trial_columns)
        try:
            found = recorded_version(self._engine, t.schema_version, self._shown, t.SCHEMA_VERSION)
            if read_only:
                self._trial_columns = present_columns(t.trials, self._engine)  # an older record lacks new columns
                self._statements = st.TrialStatements(self._trial_columns)
                if found is None or found < 4:
                    self._run_scoped = set()  # version 3 and older hold one run: nothing to scope
                return
            create_missing_tables(t.metadata, self._engine)
            add_missing_columns(t.metadata, self._engine)
            if found is None or found < t.SCHEMA_VERSION:
                upgrade_to_4(self._engine)
            stamp_version(self._engine, t.schema_version, t.SCHEMA_VERSION, self._shown)
        except RecordTooNew as exc:
            self._engine.dispose()
            raise RunError(str(exc)) from None
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise RunError(f"cannot open the record at {self._shown}: {type(exc).__name__}: {exc}") from exc

    @classmethod
    def for_run_dir(cls, run_dir: Path, *, create: bool = False, read_only: bool = False,
                    url: str | None = None, run_id: int | None = None) -> Record:
        """The record of a run directory (`<run_dir>/record.db`, or the database its record.url names);
        `create=True` makes the folder and file — or, given `url` (any SQLAlchemy URL, e.g.
        postgresql+psycopg://…), writes record.url (readable by its owner only: it may hold a password) and opens
        that; `read_only=True` opens it for reading only, which also works in a folder that cannot be written (an
        archived run). The run is the one the folder's run.json names (`run_id` when creating: a run joined)."""
        if create and url is not None:
            folder = Path(run_dir).expanduser().resolve()
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / RECORD_URL_FILE
            target.touch(mode=0o600)
            target.write_text(url + "\n", encoding="utf-8")
            return cls(url, run_id=run_id)
        run_id = run_id if create else run_file_id(run_dir)
        elsewhere = record_url(run_dir)
        if elsewhere is not None and not create:
            return cls(elsewhere, read_only=read_only, run_id=run_id)
        path = record_file(run_dir, must_exist=not create)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        if read_only:
            return cls(read_only_uri(path), read_only=True, run_id=run_id)
        return cls(f"sqlite:///{path}", run_id=run_id)

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close_io()
        self._engine.dispose()

    # ---- trials: writes ---------------------------------------------------------------------------------
    # Every write returns the trial as the record now holds it (a frozen `Trial`) and tells the listeners (the
    # loop's population): nothing is read back after a write. A finished trial never changes: the record refuses.

    def add_trial(
        self, *, parent_ids: Sequence[int], inspiration_ids: Sequence[int], name: str, motivation: str,
        code: str, diff: str, proposer: str, model: str | None, status: TrialStatus = TrialStatus.PROPOSED,
        fingerprint: str | None = None, facts: Mapping[str, Any] | None = None, budget: int | None = None,
    ) -> Trial:
        """A new trial; `facts` are what the sampler and the proposer decided for it (island, cell, model arm,
        temperature, patch type, why), kept on its row so both can be rebuilt from the record. With `budget`, only
        while the run (all its runners) holds fewer trials: TrialBudgetFull otherwise. An unfinished trial is held
        by this record's runner (claims.py)."""
        run_id = self._require_run_id()
        status = TrialStatus(status)
        now = utcnow()
        values: dict[str, Any] = dict(
            run_id=run_id, parent_ids=[int(p) for p in parent_ids],
            inspiration_ids=[int(i) for i in inspiration_ids], status=status.value,
            name=name, motivation=motivation, code=code, diff=diff, score=None, metrics={},
            error_class=None, error_message=None, seconds=0.0, seconds_saved=0.0, proposer=proposer,
            model=model, digest="", fingerprint=fingerprint, suspect=False, reused_from=None, created_at=now,
            started_at=now if status is TrialStatus.RUNNING else None,
            finished_at=now if status.finished else None, facts=dict(facts or {}),
            **(self._lease() if not status.finished else {"runner": self.runner, "lease_until": None}),
        )
        with self._writing() as conn:
            self._count_trial(conn, budget)
            trial_id = st.INSERT_TRIAL.new_id(conn, values)
            stored = as_stored(values)
            self._after_commit(lambda: self._open_rows.keep(trial_id, stored))
        return self._wrote(trial_from_values(trial_id, values))

    def mark_running(self, trial_id: int) -> Trial:
        """Start evaluating a proposed trial: this record's runner claims it (ClaimLost when another holds it)."""
        return self._transition(trial_id, {TrialStatus.PROPOSED}, status=TrialStatus.RUNNING.value,
                                started_at=utcnow(), **self._lease())

    def mark_running_unless_repeat(self, trial_id: int, fingerprint: str) -> Trial | None:
        """`mark_running`, unless the run holds an original evaluation of the trial's program (`find_fingerprint`
        of its fingerprint finds one): then None, the trial left as it is. One statement where there is none (the
        usual case), instead of a lookup and an update."""
        with self._writing() as conn:
            trial = self._move(trial_id, {TrialStatus.PROPOSED}, conn, fingerprint, dict(
                status=TrialStatus.RUNNING.value, started_at=utcnow(), **self._lease()))
        return None if trial is None else self._wrote(trial)

    def finish_trial(self, trial_id: int, outcome: Outcome, digest: Digest | None = None) -> Trial:
        """Store the engineer's outcome (status, finite score, metrics, errors, times) and digest if given, in one
        transaction; FinishedTrialError when the trial is finished already."""
        if not outcome.status.finished:
            raise ValueError(f"finish_trial needs a finished outcome, got status {outcome.status.value!r}")
        values: dict[str, Any] = dict(
            status=outcome.status.value, score=finite_or_none(outcome.score), metrics=dict(outcome.metrics),
            error_class=outcome.error_class, error_message=outcome.error_message,
            seconds=float(outcome.seconds), seconds_saved=float(outcome.seconds_saved), finished_at=utcnow(),
            suspect=bool(outcome.suspect), reused_from=outcome.reused_from,
        )
        if digest is not None:
            values["digest"] = digest.text  # the digest's data: below, as the trial's analysis of kind "digest"
        with self._writing() as conn:
            trial = self._transition(trial_id, _OPEN, conn=conn, **values)
            ev.write_evaluation(conn, trial_id, outcome)
            if digest is not None:  # an unfinished trial has no digest yet (set_digest): nothing to replace
                self._write_digest_data(conn, trial_id, digest, replace=False)
            history = self._history
            if history is not None and history.run_id == self._run_id:  # what the gates' history needs of it
                self._after_commit(lambda: history.wrote(trial_id, outcome))
        return self._wrote(trial)

    def fail_trial(self, trial_id: int, error_class: str, error_message: str, seconds: float = 0.0) -> Trial:
        return self._transition(
            trial_id, _OPEN, status=TrialStatus.FAILED.value, error_class=error_class, error_message=error_message,
            seconds=float(seconds), finished_at=utcnow(),
        )

    def reject_trial(self, trial_id: int, error_class: str, reason: str) -> Trial:
        """Refused before evaluation (e.g. not novel): status rejected, no evaluation time spent."""
        return self._transition(
            trial_id, _OPEN, status=TrialStatus.REJECTED.value, error_class=error_class, error_message=reason,
            finished_at=utcnow(),
        )

    def set_digest(self, trial_id: int, digest: Digest) -> Trial:
        """Set a finished trial's digest text (replacing the one it has); its data is kept as the trial's one
        analysis of kind "digest". The digest is analysis, not outcome: a finished trial may get one; an unfinished
        trial gets its digest with its outcome (`finish_trial`: RunError here), so finishing one never has a digest
        to replace."""
        with self._writing() as conn:
            trial = self._transition(trial_id, _FINISHED, conn=conn, digest=digest.text)
            self._write_digest_data(conn, trial_id, digest, replace=True)
        return self._wrote(trial)

    @staticmethod
    def _write_digest_data(conn: Connection, trial_id: int, digest: Digest, *, replace: bool) -> None:
        if replace:
            conn.execute(st.DELETE_ANALYSES_OF_KIND, {"trial_": trial_id, "kind_": DIGEST_KIND})
        st.INSERT_ANALYSIS.run(conn, {"trial_id": trial_id, "kind": DIGEST_KIND, "text": digest.text,
                                          "data": dict(digest.data), "created_at": utcnow()})

    def _transition(self, trial_id: int, allowed: Set[TrialStatus], conn: Connection | None = None,
                    **values: Any) -> Trial:
        """Update a trial whose status is in `allowed` (checked by the UPDATE itself, so two writers cannot both
        pass); returns the new row. FinishedTrialError for a finished trial, RunError for a missing one or a
        move the life cycle does not have, ClaimLost for an unfinished trial another runner holds. With `conn` the
        caller's transaction is used and nobody is told yet."""
        if conn is None:
            with self._writing() as own:
                trial = self._transition(trial_id, allowed, conn=own, **values)
            return self._wrote(trial)
        moved = self._move(trial_id, allowed, conn, None, values)
        assert moved is not None  # None only for a repeat, which is not looked for here
        return moved

    def _move(self, trial_id: int, allowed: Set[TrialStatus], conn: Connection, repeat_of: str | None,
              values: dict[str, Any]) -> Trial | None:
        """`_transition` in the caller's transaction; with `repeat_of` (a fingerprint), None when the run holds an
        original evaluation of it (the same UPDATE checks)."""
        checked = set(allowed) <= _OPEN and self.runner is not None  # held by this runner or none
        parameters = {"trial_": trial_id, "runner_": self.runner, **values}
        if repeat_of is not None:
            parameters.update(fingerprint_=repeat_of, run_=self._read_scope)
        known = self._open_rows.get(trial_id)
        if known is not None:  # an unfinished trial this record wrote: its row is known (trial_rows.py says why)
            statement = self._statements.transition(allowed, checked, returning=False,
                                                    unless_repeat=repeat_of is not None)
            assert isinstance(statement, Prepared)
            if statement.run(conn, parameters).rowcount:
                now = {**known, **as_stored(values)}
                self._after_commit(lambda: self._open_rows.keep(trial_id, now))
                return trial_from_values(trial_id, now)
        else:
            statement = self._statements.transition(allowed, checked, unless_repeat=repeat_of is not None)
            assert not isinstance(statement, Prepared)
            row = conn.execute(statement, parameters).first()
            if row is not None:
                read = row._asdict()
                self._after_commit(lambda: self._open_rows.keep(trial_id, read))
                return trial_from_row(row)
        if repeat_of is not None and conn.execute(self._statements.fingerprint, {
                "fingerprint_": repeat_of, "run_": self._read_scope}).first() is not None:
            return None
        self._open_rows.forget(trial_id)
        found = conn.execute(select(t.trials.c.status, t.trials.c.runner).where(t.trials.c.id == trial_id)).first()
        if found is None:
            raise RunError(f"no trial {trial_id} in the record at {self._shown}")
        status, runner = found
        wanted = values.get("status", "changed")
        if TrialStatus(status).finished:
            raise FinishedTrialError(f"trial {trial_id} is {status} already: a finished trial cannot become "
                                     f"{wanted} (record {self._shown})")
        if runner is not None and runner != self.runner and TrialStatus(status) in allowed:
            raise ClaimLost(f"trial {trial_id} is held by runner {runner} now (record {self._shown})")
        if "status" not in values:  # set_digest on an unfinished trial
            raise RunError(f"trial {trial_id} is {status}: its {', '.join(sorted(values))} can be set once it is "
                           f"finished (record {self._shown})")
        raise RunError(f"trial {trial_id} is {status}: it cannot become {wanted} (record {self._shown})")

    # ---- trials: reads ----------------------------------------------------------------------------------

    def trial(self, trial_id: int) -> Trial:
        with self._engine.connect() as conn:
            row = conn.execute(select(*self._trial_columns).where(t.trials.c.id == trial_id,
                                                                 t.trials.c.run_id == self._read_scope)).first()
        if row is None:
            raise RunError(f"no trial {trial_id} in the record at {self._shown}")
        return trial_from_row(row)

    def trials(
        self, statuses: Iterable[TrialStatus] | None = None, *, limit: int | None = None,
        newest_first: bool = False,
    ) -> list[Trial]:
        query = (select(*self._trial_columns).where(t.trials.c.run_id == self._read_scope)
                 .order_by(t.trials.c.id.desc() if newest_first else t.trials.c.id))
        if statuses is not None:
            query = query.where(t.trials.c.status.in_([TrialStatus(s).value for s in statuses]))
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            return [trial_from_row(row) for row in conn.execute(query).all()]

    def best(self, direction: Direction) -> Trial | None:
        """The best succeeded trial with a score (ties: lowest id), or None."""
        score = t.trials.c.score
        query = (
            select(*self._trial_columns)
            .where(t.trials.c.run_id == self._read_scope, t.trials.c.status == TrialStatus.SUCCEEDED.value,
                   score.is_not(None), t.trials.c.suspect.is_(False), t.trials.c.reused_from.is_(None))
            .order_by(score.desc() if direction is Direction.MAXIMIZE else score.asc(), t.trials.c.id)
            .limit(1)
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else trial_from_row(row)

    def counts(self) -> dict[str, int]:
        """Number of trials per status, one key per TrialStatus value (zeros included)."""
        counts = {status.value: 0 for status in TrialStatus}
        query = (select(t.trials.c.status, func.count()).where(t.trials.c.run_id == self._read_scope)
                 .group_by(t.trials.c.status))
        with self._engine.connect() as conn:
            for status, n in conn.execute(query).all():
                counts[status] = int(n)
        return counts

    # ---- evaluation detail (stages, telemetry, gates) ----------------------------------------------------

    def find_fingerprint(self, fingerprint: str) -> Trial | None:
        """The first finished, originally evaluated trial whose program has this fingerprint, or None (a rejected
        trial was never evaluated, so it has no outcome to reuse)."""
        with self._reading() as conn:
            row = conn.execute(self._statements.fingerprint, {"fingerprint_": fingerprint,
                                                              "run_": self._read_scope}).first()
        return None if row is None else trial_from_row(row)

    def history(self, parent_id: int | None) -> EvaluationHistory:
        """What the gates compare a child of `parent_id` with (see memory/history.py: kept between calls, each reads
        only what was committed since the last)."""
        scope = self._read_scope
        if self._history is None or self._history.run_id != scope:
            self._history = KeptHistory(scope, incremental=self._engine.dialect.name == "sqlite")
        with self._reading() as conn:
            return self._history.build(conn, parent_id)

    def stage_results(self, trial_id: int) -> list[StageResult]:
        with self._engine.connect() as conn:
            return ev.stage_results(conn, trial_id)

    def telemetry(self, trial_id: int) -> list[TelemetryPoint]:
        with self._engine.connect() as conn:
            return ev.telemetry(conn, trial_id)

    def decisions(self, trial_id: int | None = None) -> list[ev.DecisionRow]:
        with self._engine.connect() as conn:
            return ev.decisions(conn, trial_id, self._read_scope)

    def savings(self) -> dict[str, Any]:
        """Evaluation seconds in all, and seconds saved per gate."""
        with self._engine.connect() as conn:
            return ev.savings_by_gate(conn, self._read_scope)
