"""Exports a run's trials from the record as JSON lines or CSV, for analysis outside evoforge."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TextIO

from evoforge.memory.record import Record
from evoforge.views import trial_dict

CSV_COLUMNS = [
    "id", "parent_ids", "inspiration_ids", "status", "score", "name", "motivation", "error_class",
    "error_message", "seconds", "proposer", "model", "created_at", "finished_at", "metrics",
]


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
    else:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for trial in trials:
            row = trial_dict(trial)
            for key in ("parent_ids", "inspiration_ids", "metrics"):
                row[key] = json.dumps(row[key])
            writer.writerow(row)
    return len(trials)
