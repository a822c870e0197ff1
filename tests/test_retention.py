"""The retention rule for large trial files, applied when a run ends (issue 9 §3): the seed's and the best trials'
folders stay whole, other trials lose their files over `limits.keep_files_mb` but keep their programs, and
`status` says how much the run folder holds."""

from __future__ import annotations

import json
from pathlib import Path

from taskfactory import make_task
from typer.testing import CliRunner

import evoforge
from evoforge.cli import app
from evoforge.config import RunSettings
from evoforge.memory.record import Record
from evoforge.models import TrialStatus

# The evaluator (trusted) leaves a 2 MB artefact in each trial folder, as a training run leaves checkpoints.
EXTRA = """
import pathlib

_evaluate = evaluate

def evaluate(program_path):
    pathlib.Path("checkpoint.bin").write_bytes(b"x" * (2 * 1024 * 1024))
    return _evaluate(program_path)
"""


def test_large_files_of_other_trials_go_at_run_end_and_status_tells_the_folder_size(tmp_path: Path) -> None:
    root = make_task(tmp_path / "task", extra_yaml="limits: {keep_files_mb: 1}\n")
    with open(root / "evaluator.py", "a") as fh:
        fh.write(EXTRA)
    run_dir = tmp_path / "run"
    evoforge.run(root, run_dir=run_dir, settings=RunSettings(trials=10, concurrency=1, llm="offline"))

    with Record.for_run_dir(run_dir) as record:
        trials = record.trials()
    evaluated = [tr for tr in trials if (run_dir / "trials" / str(tr.id) / "checkpoint.bin").exists()
                 or tr.status is TrialStatus.SUCCEEDED and tr.reused_from is None]
    scored = sorted((tr for tr in evaluated if tr.status is TrialStatus.SUCCEEDED and tr.score is not None),
                    key=lambda tr: (-tr.score, tr.id))
    keep = {tr.id for tr in scored[:3]} | {trials[0].id}
    assert len(evaluated) > len(keep), "the run must leave trials beyond the best and the seed"
    for tr in evaluated:
        folder = run_dir / "trials" / str(tr.id)
        assert (folder / "checkpoint.bin").exists() == (tr.id in keep), tr.id
        assert (folder / "program.py").exists(), f"trial {tr.id} lost its program"

    shown = CliRunner().invoke(app, ["status", str(run_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    held = json.loads(shown.output)["disk_bytes"]
    assert held >= len(keep) * 2 * 1024 * 1024  # the kept checkpoints at least
