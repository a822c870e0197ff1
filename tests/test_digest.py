"""The deterministic digest: deltas vs parent and best, failure tails, runtime ratio, direction-aware wording."""

from __future__ import annotations

from evoforge.analysis import digest_outcome
from evoforge.models import Direction, Outcome, Trial, TrialStatus


def _trial(id_: int, score: float, seconds: float = 2.0, **metrics: float) -> Trial:
    metrics = {"score": score, **metrics}
    return Trial(id=id_, status=TrialStatus.SUCCEEDED, score=score, seconds=seconds, metrics=metrics)


def test_success_against_parent_and_best() -> None:
    parent, best = _trial(2, 1.0, seconds=2.0, loss=0.5), _trial(3, 2.0)
    outcome = Outcome(status=TrialStatus.SUCCEEDED, score=1.5, metrics={"score": 1.5, "loss": 0.4}, seconds=4.0)
    digest = digest_outcome(outcome, parent=parent, best=best, direction=Direction.MAXIMIZE, metric="score")
    assert "better than parent #2" in digest.text and "worse than best #3" in digest.text
    assert digest.data["delta_vs_parent"] == 0.5 and digest.data["improved_vs_parent"] is True
    assert abs(digest.data["metric_deltas"]["loss"] + 0.1) < 1e-12
    assert digest.data["runtime_ratio_vs_parent"] == 2.0 and "2.00x parent" in digest.text


def test_minimize_reverses_the_verdict() -> None:
    outcome = Outcome(status=TrialStatus.SUCCEEDED, score=1.5, seconds=1.0)
    digest = digest_outcome(outcome, parent=_trial(1, 1.0), best=None, direction=Direction.MINIMIZE, metric="loss")
    assert "worse than parent #1" in digest.text and digest.data["improved_vs_parent"] is False


def test_failure_shows_class_and_last_traceback_lines() -> None:
    trace = "\n".join(f"line {i}" for i in range(20)) + "\nValueError: bad shape"
    outcome = Outcome(status=TrialStatus.FAILED, error_class="crash:ValueError", error_message=trace, seconds=0.5)
    digest = digest_outcome(outcome, parent=None, best=None, direction=Direction.MAXIMIZE, metric="score")
    assert "failed: crash:ValueError" in digest.text
    assert "ValueError: bad shape" in digest.text and "line 0\n" not in digest.text
    assert digest.data["error_class"] == "crash:ValueError"
