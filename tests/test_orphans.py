"""When the evoforge process dies without cleaning up (kill -9, or a SIGTERM it does not handle), every trial it was
evaluating stops with it: under bwrap the kernel kills the jail with its parent (--die-with-parent), elsewhere the
supervisor gets SIGTERM from the kernel (parent-death signal) and ends its tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from containment import survivors
from helpers import knob_task, wait_until

CLI = [sys.executable, "-m", "evoforge"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killing_evoforge_mid_evaluation_leaves_no_trial_process(tmp_path: Path, sig: int) -> None:
    task = knob_task(tmp_path / "task", sleep=300)  # the seed's evaluation would sleep far past this test
    run_dir = tmp_path / "run"
    marker = f"EVOFORGE_TRIAL_DIR={(run_dir / 'trials' / '1').resolve()}\0".encode()
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, "run", str(task), "--run-dir", str(run_dir), "--llm", "offline",
                                 "--trials", "2"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: len(survivors(marker)) >= 1 or proc.poll() is not None, timeout_s=120), \
            "the seed's evaluation never started: " + log.read_text()[-2000:]
        assert proc.poll() is None, "the run ended early: " + log.read_text()[-2000:]
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        assert wait_until(lambda: not survivors(marker), timeout_s=60), \
            f"trial processes outlived evoforge: {survivors(marker)}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        for pid in survivors(marker):
            os.kill(pid, signal.SIGKILL)
