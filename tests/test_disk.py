"""Memory through /tmp and the disk (issue 9 §3): the jail's /tmp is capped, a trial writing past `disk_mb` is
stopped as `disk_limit` with what it wrote removed, and large files of old trials can be let go."""

from __future__ import annotations

from pathlib import Path

import pytest
from containment import BWRAP, IN_PROCESS, THROUGH_HELPER, assert_honest_run_goes_on, evaluate, make_task, trial_dir

from evoforge.config import Limits
from evoforge.experiment import isolation, launch
from evoforge.experiment.disk import MB, folder_usage, retain, run_folder_bytes
from evoforge.models import TrialStatus

TMP_FILLER = """
def result():
    written = 0
    try:
        with open("/tmp/fill", "wb") as fh:
            for _ in range(64):  # at most 256 MB, then it gives up by itself
                fh.write(b"x" * (4 * 1024 * 1024))
                fh.flush()
                written += 4
    except OSError as exc:
        return {"score": float(written), "error": exc.errno}
    return {"score": float(written), "error": 0}
"""
DISK_FILLER = """
import os, time

def result():
    try:
        with open("huge.bin", "wb") as fh:
            fh.write(b"x" * (40 * 1024 * 1024))  # one file past disk_mb: RLIMIT_FSIZE refuses it
    except OSError as exc:
        print("one big file refused:", exc, flush=True)
    for i in range(60):  # 8 MB files, each under the file-size limit, up to 480 MB; then wait for the watch
        with open(f"part{i}.bin", "wb") as fh:
            fh.write(os.urandom(1024) * (8 * 1024))
    time.sleep(30)
    return {"score": 9.0}
"""


@BWRAP
def test_filling_the_jails_tmp_stops_at_its_size(tmp_path: Path) -> None:
    task = make_task(tmp_path, IN_PROCESS, isolation="bwrap", tmp_mb=32)
    out = evaluate(task, TMP_FILLER, trial_dir(tmp_path))
    assert out.status is TrialStatus.SUCCEEDED, (out.error_class, out.error_message)
    assert out.score is not None and out.score <= 32 and out.metrics["error"] != 0  # ENOSPC (or EFBIG)
    assert_honest_run_goes_on(task, tmp_path)


@pytest.mark.parametrize("evaluator", [IN_PROCESS, THROUGH_HELPER], ids=["in-process", "helper"])
def test_writing_past_disk_mb_is_a_disk_limit_and_leaves_nothing_behind(tmp_path: Path, evaluator: str) -> None:
    task = make_task(tmp_path, evaluator, timeout=40, disk_mb=20)
    where = trial_dir(tmp_path)
    out = evaluate(task, DISK_FILLER, where)
    assert (out.status, out.error_class) == (TrialStatus.FAILED, "disk_limit"), out.error_message
    assert "disk_mb=20" in (out.error_message or "") and "removed" in (out.error_message or "")
    assert not list(where.glob("*.bin"))
    assert folder_usage(where)[0] <= 2 * MB  # the program and the logs
    assert (where / "program.py").exists()
    assert_honest_run_goes_on(task, tmp_path)


def test_retention_keeps_the_best_and_the_failures_logs(tmp_path: Path) -> None:
    trials = tmp_path / "run" / "trials"
    for n in (1, 2, 3):
        (trials / str(n)).mkdir(parents=True)
        for name in ("weights.bin", "stdout.log", "program.py"):
            (trials / str(n) / name).write_bytes(b"x" * (2 * MB))
        (trials / str(n) / "small.txt").write_text("small")
    before = run_folder_bytes(tmp_path / "run")
    freed = retain(trials, keep_trials={1}, failed={3}, threshold_mb=1, program_names={"program.py"})
    left = sorted(str(p.relative_to(trials)) for p in trials.rglob("*") if p.is_file())
    assert left == ["1/program.py", "1/small.txt", "1/stdout.log", "1/weights.bin", "2/program.py", "2/small.txt",
                    "3/program.py", "3/small.txt", "3/stdout.log"]
    assert freed >= 3 * 2 * MB and run_folder_bytes(tmp_path / "run") == before - freed


def test_an_older_bwrap_without_size_still_runs_and_the_run_start_says_tmp_is_uncapped(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    argv = launch.launch_argv(["true"], Limits(isolation="bwrap"), {}, tmp_path)
    assert ("--size" in argv) == isolation.bwrap_sizes_tmpfs()
    monkeypatch.setattr(launch, "bwrap_sizes_tmpfs", lambda: False)
    monkeypatch.setattr(isolation, "bwrap_sizes_tmpfs", lambda: False)
    assert "--size" not in launch.launch_argv(["true"], Limits(isolation="bwrap"), {}, tmp_path)
    assert "/tmp is NOT capped at tmp_mb=256" in isolation.describe_isolation(Limits(isolation="bwrap"))
