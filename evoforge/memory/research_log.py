"""The research log kept beside the trials: LLM calls, analyses, the knowledge each researcher saw, research
agendas, and the run's component state (wall seconds, why it stopped, the evaluator's seal) that `resume` restores,
each of the record's run (one database may hold many). Mixed into `Record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from evoforge.memory import statements as st
from evoforge.memory import tables as t
from evoforge.memory.tables import AnalysisRow, LLMCallRow, finite_or_none, utcnow
from evoforge.memory.transactions import Transactions
from evoforge.memory.upgrades import LEGACY_STATE as _LEGACY_STATE
from evoforge.models import LLMCall

ANALYSES_KEPT = 4096  # trials whose latest analysis text the record keeps in memory (`latest_analysis`)
_LATEST_ANALYSIS = (select(t.analyses.c.text)
                    .where(t.analyses.c.trial_id == bindparam("trial_"), t.analyses.c.kind == "analysis")
                    .order_by(t.analyses.c.id.desc()).limit(1))


class ResearchLog(Transactions):
    """Everything recorded around trials; `Record` provides the engine and the run (`run_id`; `_run_scoped`: the
    tables that have a run_id column, none in a version-3 record opened read-only, which holds one run)."""

    run_id: int
    _read_scope: int
    _run_scoped: set[str]
    # trial id → the text of its latest analysis of kind "analysis", for the trials this object wrote or read one
    # of (at most ANALYSES_KEPT, the oldest forgotten first); made by `Record`
    _analysis_texts: dict[int, str]

    def add_llm_calls(self, trial_id: int | None, calls: Sequence[LLMCall]) -> None:
        if not calls:
            return
        now = utcnow()
        rows = [
            dict(
                trial_id=trial_id, run_id=self.run_id, role=c.role, model=c.model, tokens_in=int(c.tokens_in),
                tokens_out=int(c.tokens_out), latency_s=float(c.latency_s), prompt=c.prompt,
                response=c.response, error=c.error, cost_usd=float(c.cost_usd), temperature=c.temperature,
                retries=int(c.retries),
                created_at=now,
            )
            for c in calls
        ]
        with self._writing() as conn:
            st.INSERT_LLM_CALLS.run(conn, rows)

    def add_analysis(self, trial_id: int, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        self.add_analyses(trial_id, [(kind, text, data)])

    def add_analyses(self, trial_id: int, rows: Sequence[tuple[str, str, dict[str, Any] | None]]) -> None:
        """The trial's analyses (kind, text, data), in this order, in one statement (an analysis and its lessons)."""
        if not rows:
            return
        texts = [text for kind, text, _data in rows if kind == "analysis"]
        if texts:
            self._analysis_texts.pop(trial_id, None)  # until the new one is committed, read again
        now = utcnow()
        with self._writing() as conn:
            st.INSERT_ANALYSIS.run(conn, [{"trial_id": trial_id, "kind": kind, "text": text,
                                               "data": dict(data or {}), "created_at": now}
                                              for kind, text, data in rows])
        if texts:
            self._after_commit(lambda: self._keep_analysis(trial_id, texts[-1]))

    def _keep_analysis(self, trial_id: int, text: str) -> None:
        texts = self._analysis_texts
        texts.pop(trial_id, None)
        texts[trial_id] = text
        if len(texts) > ANALYSES_KEPT:
            texts.pop(next(iter(texts)), None)

    def known_analysis(self, trial_id: int) -> str | None:
        """The text of the trial's latest analysis when this object knows it without a read (it wrote or read it),
        else None; safe to call from any thread."""
        return self._analysis_texts.get(trial_id)

    def latest_analysis(self, trial_id: int) -> str:
        """The text of the trial's latest analysis of kind "analysis" ("" while it has none). A trial analysed is
        read once: its text is kept (an analysis added through this object replaces it)."""
        known = self.known_analysis(trial_id)
        if known is not None:
            return known
        with self._reading() as conn:
            text = conn.execute(_LATEST_ANALYSIS, {"trial_": trial_id}).scalar()
        if text is None:  # none yet (its analysis may be on its way, maybe from another runner): not kept
            return ""
        self._keep_analysis(trial_id, text)
        return text

    def llm_calls(self, trial_id: int | None = None) -> list[LLMCallRow]:
        """The LLM calls of one trial, or of the whole run when `trial_id` is None; oldest first."""
        columns = [c for c in t.llm_calls.c if c.name != "run_id"]
        query = select(*columns).order_by(t.llm_calls.c.id)
        if trial_id is not None:
            query = query.where(t.llm_calls.c.trial_id == trial_id)
        elif t.llm_calls.name in self._run_scoped:
            query = query.where(t.llm_calls.c.run_id == self._read_scope)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [LLMCallRow(**row._asdict()) for row in rows]

    def analyses(self, trial_id: int) -> list[AnalysisRow]:
        query = select(t.analyses).where(t.analyses.c.trial_id == trial_id).order_by(t.analyses.c.id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            AnalysisRow(id=r.id, trial_id=r.trial_id, kind=r.kind, text=r.text, data=dict(r.data or {}),
                        created_at=r.created_at)
            for r in rows
        ]

    def add_knowledge_shown(self, trial_id: int, shown: Sequence[tuple[int, str, str, float | None]]) -> None:
        """Which knowledge items (id, kind, title, score) the researcher saw for this trial, in rank order."""
        if not shown:
            return
        rows = [dict(trial_id=trial_id, item_id=i, rank=r, kind=k, title=title, score=finite_or_none(s))
                for r, (i, k, title, s) in enumerate(shown)]
        with self._writing() as conn:
            st.INSERT_KNOWLEDGE_SHOWN.run(conn, rows)

    def knowledge_shown(self, trial_id: int) -> list[dict[str, Any]]:
        shown = t.knowledge_shown
        query = select(shown).where(shown.c.trial_id == trial_id).order_by(shown.c.rank)
        with self._engine.connect() as conn:
            return [dict(item_id=r.item_id, kind=r.kind, title=r.title, score=r.score) for r in conn.execute(query)]

    def add_agenda(self, after_trial: int, text: str, data: dict[str, Any] | None = None) -> None:
        with self._writing() as conn:
            conn.execute(insert(t.agendas).values(run_id=self.run_id, after_trial=after_trial, text=text,
                                                  data=dict(data or {}), created_at=utcnow()))

    def agendas(self) -> list[dict[str, Any]]:
        """Every research agenda written during the run, oldest first."""
        a = t.agendas.c
        query = select(a.after_trial, a.text, a.data, a.created_at).order_by(a.id)
        if t.agendas.name in self._run_scoped:
            query = query.where(a.run_id == self._read_scope)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [dict(after_trial=r.after_trial, text=r.text, data=dict(r.data or {}), created_at=r.created_at)
                for r in rows]

    def save_state(self, key: str, value: dict[str, Any]) -> None:
        """Keep a piece of the run's state (its wall seconds, why it stopped) so `resume` continues it."""
        with self._writing() as conn:
            now = utcnow()
            updated = st.UPDATE_STATE.run(conn, {"run_": self.run_id, "key_": key, "value": value,
                                                     "updated_at": now})
            if updated.rowcount == 0:
                st.INSERT_STATE.run(conn, {"run_id": self.run_id, "key": key, "value": value, "updated_at": now})

    def load_state(self, key: str) -> dict[str, Any] | None:
        state = t.run_state
        query = select(state.c.value).where(state.c.run_id == self._read_scope, state.c.key == key)
        if not self._run_scoped:  # a version-3 record opened read-only: its one run's state, kept globally
            query = select(_LEGACY_STATE.c.value).where(_LEGACY_STATE.c.key == key)
        try:
            with self._engine.connect() as conn:
                value = conn.execute(query).scalar()
        except (OperationalError, ProgrammingError):  # an older record opened read-only: no such table
            return None
        return None if value is None else dict(value)
