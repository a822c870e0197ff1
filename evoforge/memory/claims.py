"""Several runners on one run: which runner holds an unfinished trial and until when (its lease, renewed by the
runner's heartbeat), the shared trial budget, and what a runner reads of the others' work. Mixed into `Record`.

Every claim is one guarded UPDATE whose row count decides. That holds on SQLite (one writer at a time) and on
PostgreSQL (an updated row stays locked until its transaction ends, and a second updater's WHERE is checked again
against the winner's row), so two runners can never both hold a trial, nor both take the run's last trial.
Lease times are the runners' clocks (UTC): keep the machines' clocks in step (NTP), well within the lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, bindparam, func, or_, select, true, update

from evoforge.errors import RunError
from evoforge.memory import tables as t
from evoforge.memory.prepared import Prepared
from evoforge.memory.tables import utcnow
from evoforge.models import Trial, TrialStatus

DEFAULT_LEASE_S = 60.0
OPEN = frozenset({TrialStatus.PROPOSED, TrialStatus.RUNNING})  # what may finish
_OPEN_VALUES = [s.value for s in OPEN]


_HELD = func.coalesce(t.runs.c.trial_count, 0)
_COUNT_ANY = update(t.runs).where(t.runs.c.id == bindparam("run")).values(trial_count=_HELD + 1)
_COUNT = Prepared(_COUNT_ANY)  # built once: per trial
_COUNT_WITHIN = Prepared(_COUNT_ANY.where(_HELD < bindparam("budget")))


class TrialBudgetFull(RunError):
    """The run holds its number of trials already (all runners together): the trial was not added."""


class ClaimLost(RunError):
    """Another runner holds the trial now (this runner's lease on it ran out): this one leaves it alone."""


def new_runner_id() -> str:
    """A name for a runner that no other will have: host, process, and a random part."""
    return f"{socket.gethostname()[:80]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Claims:
    """The runner's side of a shared run; `Record` provides the engine, the run id and the writes."""

    _engine: Engine
    _shown: str
    _trial_columns: list[Any]
    _writing: Callable[[], AbstractContextManager[Connection]]
    _wrote: Callable[[Trial], Trial]
    _require_run_id: Callable[[], int]
    _from_row: Callable[[Any], Trial]
    runner: str | None = None  # None: a tool, not a runner (no lease taken, no claim checked)
    lease_s: float = DEFAULT_LEASE_S

    def act_as(self, runner: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Write from now on as runner `runner`: the trials it adds or starts are held by it for `lease_s` seconds
        at a time (renewed by `renew_leases`), and it changes no unfinished trial another runner holds."""
        self.runner, self.lease_s = runner, float(lease_s)

    def _lease(self) -> dict[str, Any]:
        until = utcnow() + timedelta(seconds=self.lease_s) if self.runner is not None else None
        return {"runner": self.runner, "lease_until": until}

    def _claimable(self, *, others_only: bool = False) -> ColumnElement[bool]:
        """SQL: an unfinished trial of the run that no live runner holds (no runner, or its lease ran out) — or,
        unless `others_only`, one this runner holds (its own, after a restart)."""
        c = t.trials.c
        free = or_(c.runner.is_(None), c.lease_until.is_(None), c.lease_until < utcnow())
        if self.runner is None:  # a tool requeueing a stopped run: every unfinished trial (the run lock guards it)
            free = true()
        elif others_only:
            free = and_(free, or_(c.runner.is_(None), c.runner != self.runner))
        else:
            free = or_(free, c.runner == self.runner)
        return and_(c.run_id == self._require_run_id(), c.status.in_(_OPEN_VALUES), free)

    def _count_trial(self, conn: Connection, budget: int | None) -> None:
        """Count one more trial in the run (same transaction as its insert); with `budget`, only while the run
        holds fewer (TrialBudgetFull otherwise): runners on several machines together add exactly `budget`."""
        if budget is None:
            _COUNT.run(conn, {"run": self._require_run_id()})
        elif _COUNT_WITHIN.run(conn, {"run": self._require_run_id(), "budget": budget}).rowcount == 0:
            raise TrialBudgetFull(f"the run holds its {budget} trials already (record {self._shown})")

    def requeue_in_flight(self) -> list[int]:
        """At a runner's start: the run's unfinished trials that no other live runner holds (its own from before a
        crash, those of runners whose lease ran out, those of no runner) go back to proposed (the one move back
        the life cycle has: their evaluation was lost with its process), held by this runner; returns their ids,
        ascending."""
        with self._writing() as conn:
            moved = conn.execute(
                update(t.trials).where(self._claimable())
                .values(status=TrialStatus.PROPOSED.value, started_at=None, **self._lease())
                .returning(*self._trial_columns)
            ).all()
        trials = sorted((self._from_row(row) for row in moved), key=lambda tr: tr.id)
        for trial in trials:
            self._wrote(trial)
        return [trial.id for trial in trials]

    def adopt(self, limit: int = 8) -> Trial | None:
        """One unfinished trial of the run that another runner left (its lease ran out: killed, cut off) or no
        runner holds, claimed for this runner and back to proposed (to be evaluated again); None when there is
        none. Of several runners adopting at once, one gets each trial."""
        c = t.trials.c
        with self._writing() as conn:
            ids = conn.execute(select(c.id).where(self._claimable(others_only=True)).order_by(c.id)
                               .limit(limit)).scalars().all()
            for trial_id in ids:
                row = conn.execute(
                    update(t.trials).where(c.id == trial_id, self._claimable(others_only=True))
                    .values(status=TrialStatus.PROPOSED.value, started_at=None, **self._lease())
                    .returning(*self._trial_columns)
                ).first()
                if row is not None:
                    break
            else:
                return None
        return self._wrote(self._from_row(row))

    def renew_leases(self) -> int:
        """The heartbeat: this runner's unfinished trials are held `lease_s` seconds more; returns how many."""
        if self.runner is None:
            return 0
        c = t.trials.c
        with self._writing() as conn:
            result = conn.execute(
                update(t.trials)
                .where(c.run_id == self._require_run_id(), c.runner == self.runner, c.status.in_(_OPEN_VALUES))
                .values(lease_until=self._lease()["lease_until"])
            )
        return int(result.rowcount)

    def others_states(self, above: int, watch: Collection[int] = ()) -> list[tuple[int, str, datetime | None]]:
        """(id, status, lease end) of the run's trials other runners hold or held: every one with an id above
        `above`, and those of `watch` (the others' unfinished trials this runner follows); a cheap read (no code)
        a runner polls, then reads in full only the trials that are new or changed (`trials_by_id`)."""
        c = t.trials.c
        fresh = c.id > above if not watch else or_(c.id > above, c.id.in_(list(watch)))
        others = true() if self.runner is None else or_(c.runner.is_(None), c.runner != self.runner)
        query = select(c.id, c.status, c.lease_until).where(c.run_id == self._require_run_id(), fresh, others)
        with self._engine.connect() as conn:
            return [(int(i), str(status), until) for i, status, until in conn.execute(query.order_by(c.id)).all()]

    def trials_by_id(self, ids: Collection[int]) -> list[Trial]:
        """The run's trials of these ids, as they now stand, oldest first."""
        c = t.trials.c
        query = select(*self._trial_columns).where(c.run_id == self._require_run_id(), c.id.in_(list(ids)))
        with self._engine.connect() as conn:
            return [self._from_row(row) for row in conn.execute(query.order_by(c.id)).all()]

    def held_elsewhere(self) -> int:
        """How many of the run's unfinished trials other live runners hold (their leases still run)."""
        c = t.trials.c
        query = select(func.count()).where(
            c.run_id == self._require_run_id(), c.status.in_(_OPEN_VALUES), c.runner.is_not(None),
            c.lease_until >= utcnow(), *([c.runner != self.runner] if self.runner is not None else []))
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)
