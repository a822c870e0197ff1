"""The progress display's cost: it redraws on its own clock, once a second, and a finished trial never redraws it;
the last redraw shows the final numbers."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from rich.console import Console
from rich.live import Live

from evoforge.config import RunSettings
from evoforge.models import Trial, TrialStatus
from evoforge.progress import ProgressObserver


def test_the_display_redraws_once_a_second_not_per_trial(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    mine = threading.get_ident()
    redraws: list[int] = []
    original = Live.refresh

    def counted(self: Live) -> None:
        redraws.append(threading.get_ident())
        original(self)

    monkeypatch.setattr(Live, "refresh", counted)
    out = io.StringIO()
    observer = ProgressObserver(Console(file=out, force_terminal=True, width=100))
    observer.run_started(run_dir=tmp_path, proposer="fake", settings=RunSettings(trials=500), done=0)
    try:
        assert observer.live is not None and observer.live.refresh_per_second <= 1
        started = len(redraws)  # run_started's own redraws
        counts = {status.value: 0 for status in TrialStatus}
        for i in range(1, 301):
            counts["succeeded"] += 1
            trial = Trial(id=i, status=TrialStatus.SUCCEEDED, score=float(i))
            observer.trial_finished(trial, trial, counts)
        assert mine not in redraws[started:]  # trials only update the numbers: no redraw on the caller's thread
    finally:
        observer.run_finished()
    last = out.getvalue().rsplit("trials ", 1)[-1]  # the last redraw, on stopping, shows the final numbers
    assert "300/500" in last and "best 300" in last and "failed 0" in last
