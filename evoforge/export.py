"""Exports a run's trials from the record as JSON lines or CSV, for analysis outside evoforge.

CSV has one column per metric (`metric:<name>`, over the metrics of every trial; empty where a trial has none), so a
spreadsheet or `pandas.read_csv` gets numbers, not one JSON blob."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, TextIO

from evoforge.memory.record import Record
from evoforge.views import trial_dict

CSV_COLUMNS = [
    "id", "parent_ids", "inspiration_ids", "status", "score", "name", "motivation", "error_class",
    "error_message", "seconds", "seconds_saved", "proposer", "model", "suspect", "reused_from", "created_at",
    "finished_at",
]
METRIC_PREFIX = "metric:"


def _cell(value: Any) -> Any:
    """Numbers and text as they are; anything else (lists, dicts) as JSON."""
    return value if value is None or isinstance(value, str | int | float) else json.dumps(value)


def write_trials(run_dir: Path, out: TextIO, fmt: str) -> int:
    """Write every trial of the run to `out` in `fmt` ("jsonl" or "csv"); returns the number written."""
    record = Record.for_run_dir(run_dir, read_only=True)
    try:
        trials = record.trials()
    finally:
        record.close()
    if fmt == "jsonl":
        for trial in trials:
            out.write(json.dumps(trial_dict(trial, with_code=True), default=str) + "\n")
        return len(trials)
    metrics = sorted({name for trial in trials for name in trial.metrics})
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS + [METRIC_PREFIX + m for m in metrics],
                            extrasaction="ignore")
    writer.writeheader()
    for trial in trials:
        row = trial_dict(trial)
        for key in ("parent_ids", "inspiration_ids"):
            row[key] = json.dumps(row[key])
        row.update({METRIC_PREFIX + name: _cell(value) for name, value in trial.metrics.items()})
        writer.writerow(row)
    return len(trials)
